"""`vllm` backend: in-process `vllm.LLM` for GPU executors.

vLLM is imported lazily (it is not installable on CPU machines). The request -> sampling-kwargs
and output -> result translations are pure functions so they are tested without vLLM. All
requests of a chunk go to vLLM in one `LLM.chat` call so its scheduler batches them (continuous
batching + prefix caching); chunks bound what a crash can lose, since results are cached per chunk.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from visit_assets.lib.llm.llama_cpp_backend import gguf_identity
from visit_assets.lib.llm.types import LLMRequest, LLMResult, error_result, finish_result
from visit_assets.lib.models.identity import ModelIdentity

STRUCTURED_KEY = "structured_outputs"  # placeholder key in the kwargs; resolved to the installed vLLM's API


def vllm_sampling_kwargs(request: LLMRequest, default_seed: int | None = 0) -> dict[str, Any]:
    """Keyword arguments for `vllm.SamplingParams` (structured output as a plain dict)."""
    p = request.params
    kwargs: dict[str, Any] = {
        "n": 1,
        "temperature": float(p.temperature),
        "top_p": float(p.top_p),
        "max_tokens": int(p.max_tokens),
        "seed": p.seed if p.seed is not None else default_seed,
    }
    if p.stop:
        kwargs["stop"] = list(p.stop)
    if request.json_schema is not None:
        kwargs[STRUCTURED_KEY] = {"json": dict(request.json_schema)}
    elif request.regex is not None:
        kwargs[STRUCTURED_KEY] = {"regex": request.regex}
    return kwargs


def vllm_result(request: LLMRequest, output: Any, model: ModelIdentity):
    """`LLMResult` from a vLLM `RequestOutput` (duck-typed: outputs[0].text/token_ids/finish_reason)."""
    if not getattr(output, "outputs", None):
        return error_result(request, "vLLM returned no output", model=model)
    first = output.outputs[0]
    finish = getattr(first, "finish_reason", None)
    if finish == "abort":
        return error_result(request, "vLLM aborted the request", model=model)
    return finish_result(
        request,
        first.text,
        prompt_tokens=len(getattr(output, "prompt_token_ids", None) or []),
        completion_tokens=len(getattr(first, "token_ids", None) or []),
        finish_reason=finish,
        model=model,
    )


def _sampling_params_factory() -> Any:
    """Build `vllm.SamplingParams` from our kwargs on whichever structured-output API is installed."""
    from vllm import SamplingParams

    try:  # vLLM >= 0.10.2: SamplingParams(structured_outputs=StructuredOutputsParams(...))
        from vllm.sampling_params import StructuredOutputsParams

        cls, field = StructuredOutputsParams, "structured_outputs"
    except ImportError:  # older: SamplingParams(guided_decoding=GuidedDecodingParams(...))
        from vllm.sampling_params import GuidedDecodingParams

        cls, field = GuidedDecodingParams, "guided_decoding"

    def make(kwargs: Mapping[str, Any]) -> Any:
        kwargs = dict(kwargs)
        structured = kwargs.pop(STRUCTURED_KEY, None)
        if structured is not None:
            kwargs[field] = cls(**structured)
        return SamplingParams(**kwargs)

    return make


class VLLMBackend:
    kind = "vllm"

    def __init__(
        self,
        model: str,
        *,
        model_name: str | None = None,
        weights: str | None = None,
        tensor_parallel_size: int = 1,
        max_model_len: int | None = None,
        gpu_memory_utilization: float = 0.9,
        seed: int = 0,
        dtype: str = "auto",
        enable_prefix_caching: bool = True,
        chunk_size: int = 2048,
        llm_kwargs: Mapping[str, Any] | None = None,
    ):
        if not model:
            raise ValueError("the vllm backend needs a model id or path")
        self.model = model
        if weights is None and model.endswith(".gguf") and os.path.isfile(model):
            g = gguf_identity(model)  # same weights as llama_cpp: shared cache entries
            self._identity = ModelIdentity(model_name or g.name, g.weights, "llm")
        else:
            self._identity = ModelIdentity(name=model_name or model, weights=weights or f"vllm:{model}", kind="llm")
        self.engine_kwargs: dict[str, Any] = {
            "model": model,
            "tensor_parallel_size": tensor_parallel_size,
            "gpu_memory_utilization": gpu_memory_utilization,
            "seed": seed,
            "dtype": dtype,
            "enable_prefix_caching": enable_prefix_caching,
        }
        if max_model_len:
            self.engine_kwargs["max_model_len"] = max_model_len
        self.engine_kwargs.update(llm_kwargs or {})
        self.seed = seed
        self.chunk_size = max(1, chunk_size)
        self._llm: Any = None
        self._make_params: Any = None
        # vLLM's offline engine is not thread-safe: batches of sampling lanes take turns (a lane still
        # prepares its next round while another's batch is on the GPU)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"VLLMBackend({self.model!r}, tp={self.engine_kwargs['tensor_parallel_size']})"

    @property
    def identity(self) -> ModelIdentity:
        return self._identity

    def _engine(self) -> Any:
        if self._llm is None:
            from vllm import LLM

            self._llm = LLM(**self.engine_kwargs)
            self._make_params = _sampling_params_factory()
        return self._llm

    def complete(self, requests: Sequence[LLMRequest], on_result) -> None:
        with self._lock:
            self._complete(requests, on_result)

    def _complete(self, requests: Sequence[LLMRequest], on_result) -> None:
        llm = self._engine()
        for start in range(0, len(requests), self.chunk_size):
            chunk = requests[start : start + self.chunk_size]
            params = [self._make_params(vllm_sampling_kwargs(r, self.seed)) for r in chunk]
            # Images are trivial here: `LLM.chat` parses OpenAI content parts (data URIs) with the same code
            # as `vllm serve`; a text-only model rejects them, recorded as an error row by the fallback below.
            try:
                outputs = llm.chat([r.openai_messages() for r in chunk], sampling_params=params, use_tqdm=False)
            except (ValueError, TypeError):  # a bad request rejects the whole call: retry one by one
                outputs = []
                for r, sp in zip(chunk, params, strict=True):
                    try:
                        outputs.append(llm.chat([r.openai_messages()], sampling_params=[sp], use_tqdm=False)[0])
                    except (ValueError, TypeError) as one_exc:
                        outputs.append(error_result(r, f"{type(one_exc).__name__}: {one_exc}", model=self._identity))
            for j, (r, out) in enumerate(zip(chunk, outputs, strict=True)):
                res = out if isinstance(out, LLMResult) else vllm_result(r, out, self._identity)
                on_result(start + j, res)

    def close(self) -> None:
        self._llm = None
