"""The concurrency pool of a step that calls a model.

`gpu`: the model runs in the step's own process (llama.cpp on a laptop, vLLM on a GPU executor; the
torch stages — image_embeddings, clustered_instructions' embedder, quality_scores — declare `gpu`
themselves): one such step at a time per machine, dagster.yaml's default pool limit.
`llm`: the step only sends requests to OpenAI-compatible endpoints (a vLLM fleet, an API), which
queue and batch on their side; its limit is how many steps may feed them at once (`dagster instance
concurrency set llm N`; unset, the instance's default limit). Before this pool, a fleet was fed by
one step at a time, behind the image embeddings (bench/coco_daemon.py showed the waits).

Pools are fixed when the definitions load, so a step's pool follows the backends its roles take from
the environment (VISIT_LLM_BACKEND, VISIT_<ROLE>_LLM_BACKEND), as the code server sees it; a backend
set only in a run's resource config does not move a step to another pool.
"""

from __future__ import annotations

from .resources import LLMResource

GPU, LLM = "gpu", "llm"
IN_PROCESS = {"llama_cpp", "vllm"}  # backends that load the model into the step's process


def role_backend(role: str) -> str:
    """The backend `role` gets from the environment, as LLMResource resolves it. An unknown name
    counts as in-process here: the step then fails at run time naming it, as before pools, instead
    of the whole code location failing to load."""
    resource = LLMResource()
    try:
        return resource.role_overrides(role).get("backend") or resource.backend_kind()
    except ValueError:
        return "llama_cpp"


def llm_pool(*roles: str) -> str:
    """`gpu` when any of the step's roles runs its model in the step's process, else `llm`."""
    return GPU if any(role_backend(r) in IN_PROCESS for r in roles) else LLM
