"""A snapshot of the asset graph (keys, groups, partitions, parents, pools, checks, tags, kinds):
any change to the graph shows in review as a diff of tests/data/asset_graph.txt. After an intended
change, rewrite it with `python tests/test_asset_graph.py` and commit it with the change. Taken in a
process without VISIT_* variables: the laptop's defaults (pools follow the LLM backends set there)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SNAPSHOT = Path(__file__).resolve().parent / "data" / "asset_graph.txt"


def _partitions(pd) -> str:
    from visit_assets.defs.partitions import dataset_partitions, image_partitions

    return {None: "unpartitioned", dataset_partitions: "dataset", image_partitions: "dataset x shard"}.get(pd, repr(pd))


def render() -> str:
    from visit_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    lines = []
    for key in graph.toposorted_asset_keys:
        node = graph.get(key)
        fields = {
            "group": node.group_name, "partitions": _partitions(node.partitions_def),
            "parents": ", ".join(sorted(p.to_user_string() for p in node.parent_keys)) or "-",
            "pools": ", ".join(sorted(node.pools)) or "-",
            "checks": ", ".join(sorted(c.name for c in node.check_keys)) or "-",
            "tags": ", ".join(f"{k}={v}" for k, v in sorted(node.tags.items()) if not k.startswith("dagster/kind/")) or "-",
            "kinds": ", ".join(sorted(node.kinds)) or "-",
        }
        lines += [key.to_user_string()] + [f"  {name}: {value}" for name, value in fields.items()]
    return "\n".join(lines) + "\n"


def rendered_in_a_clean_environment(**settings: str) -> str:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("VISIT_")}, **settings}
    return subprocess.run([sys.executable, __file__, "--print"], env=env, cwd=SNAPSHOT.parents[2], check=True,
                          capture_output=True, text=True).stdout


def test_the_asset_graph_is_the_committed_snapshot():
    current = rendered_in_a_clean_environment()
    assert SNAPSHOT.read_text() == current, (
        "the asset graph changed; if intended, run `python tests/test_asset_graph.py` and commit "
        f"tests/data/asset_graph.txt. Now:\n{current}")


def pools(snapshot: str) -> dict[str, str]:
    out, asset = {}, None
    for line in snapshot.splitlines():
        if not line.startswith(" "):
            asset = line
        elif line.strip().startswith("pools: "):
            out[asset] = line.split(": ", 1)[1]
    return out


ENDPOINT_ONLY = {"image_facts", "generated_instructions", "conversation_attempts", "generated_conversations",
                 "conversation_rejects", "filtered_conversations", "pairwise_evaluation"}
TORCH = {"image_embeddings", "clustered_instructions", "quality_scores"}


def test_llm_steps_on_endpoints_take_the_llm_pool_and_model_steps_the_gpu_pool():
    laptop = pools(rendered_in_a_clean_environment())
    assert {a: laptop[a] for a in ENDPOINT_ONLY | TORCH} == dict.fromkeys(ENDPOINT_ONLY | TORCH, "gpu")
    fleet = pools(rendered_in_a_clean_environment(VISIT_LLM_BACKEND="openai"))
    assert {a: fleet[a] for a in ENDPOINT_ONLY} == dict.fromkeys(ENDPOINT_ONLY, "llm")
    assert {a: fleet[a] for a in TORCH} == dict.fromkeys(TORCH, "gpu")
    # the pairwise judge falls back to the quality judge's model: a vLLM judge loads in the step
    mixed = pools(rendered_in_a_clean_environment(VISIT_LLM_BACKEND="openai", VISIT_JUDGE_LLM_BACKEND="vllm"))
    assert mixed["pairwise_evaluation"] == "gpu" and mixed["generated_conversations"] == "llm"
    # an unknown backend name does not stop the definitions from loading (the step fails at run time)
    assert pools(rendered_in_a_clean_environment(VISIT_LLM_BACKEND="opanai"))["image_facts"] == "gpu"


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    if sys.argv[1:] == ["--print"]:
        sys.stdout.write(render())
    else:
        SNAPSHOT.write_text(rendered_in_a_clean_environment())
        print(f"wrote {SNAPSHOT}")
