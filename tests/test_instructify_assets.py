"""Instructify assets through real Dagster and the real packaged LLM: accounting, lineage, zero re-sends."""

import dagster as dg
import polars as pl
import pytest

from visit_assets.definitions import defs
from visit_assets.lib.ids import shard_of
from visit_assets.lib.storage import ParquetStore

pytestmark = pytest.mark.slow

# The shard holding the astronaut photo: it has QA pairs (LLaVA + JSONL), so facts need the LLM too.
SHARD_NO = shard_of("astronaut.jpg", 4)
SHARD = dg.MultiPartitionKey({"dataset": "sample", "shard": str(SHARD_NO)})
SMALL = {"ops": {"generated_conversations": {"config": {"max_iterations": 1, "max_tokens": 96}}}}
STEPS = ["grouped_metadata", "metadata_rejects", "image_facts", "generated_conversations", "conversation_attempts"]


def _run(instance, job, keys, partition, run_config=None):
    result = job.execute_in_process(instance=instance, partition_key=partition, run_config=run_config or {},
                                    asset_selection=[dg.AssetKey(k) for k in keys])
    assert result.success
    return result


def _meta(instance, key):
    return instance.get_latest_materialization_event(dg.AssetKey(key)).asset_materialization.metadata


def test_shard_materializes_with_lineage_and_a_rerun_sends_nothing(home):
    job = defs.resolve_implicit_global_asset_job_def()
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("dataset", ["sample"])
        _run(instance, job, ["source_records"], "sample")
        _run(instance, job, STEPS, SHARD, SMALL)
        first = _meta(instance, "generated_conversations")
        facts_meta = _meta(instance, "image_facts")
        _run(instance, job, STEPS, SHARD, SMALL)
        again = _meta(instance, "generated_conversations")
        facts_again = _meta(instance, "image_facts")
    assert first["llm_sent"].value > 0
    assert again["llm_sent"].value == 0 and again["llm_cache_hits"].value == first["llm_requests"].value
    assert facts_meta["qa_rewrites"].value > 0 and facts_meta["llm_sent"].value > 0
    assert facts_again["llm_sent"].value == 0
    store = ParquetStore(home / "store")
    grouped = store.read("grouped_metadata", "sample", SHARD_NO)
    attempts = store.read("conversation_attempts", "sample", SHARD_NO)
    stopped = attempts.filter(pl.col("status") == "stopped")
    assert sorted(stopped["image_id"]) == sorted(grouped["image_id"])  # every image explains its count
    assert set(attempts["llm_model"]) == {"SmolLM2-135M-Instruct.Q4_1.gguf"}
    assert attempts["llm_weights"].str.len_chars().min() == 64
    tried = attempts.filter(pl.col("status") != "stopped")
    assert tried.height == grouped.height  # one iteration per image with max_iterations=1
    assert tried["prompt_id"].null_count() == 0 and tried["generation_cache_key"].null_count() == 0
    facts = store.read("image_facts", "sample", SHARD_NO)
    assert set(facts["image_id"]) == set(grouped["image_id"])
    assert facts["layout_prompt_version"].null_count() == facts.height  # the default: the layout text as it is


PARAGRAPHS = {"ops": {"image_facts": {"config": {"layout_text": "paragraphs", "layout_max_tokens": 48}}}}


def test_layout_paragraphs_are_asked_once_and_kept_or_explained(home):
    """The optional layout pass with the real packaged model: one request per layout subtree beside
    the QA rewrites (answered QA rewrites not sent again), each subtree either a paragraph or the
    layout text with the reason, the prompt version on every row; a re-run sends nothing."""
    job = defs.resolve_implicit_global_asset_job_def()
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("dataset", ["sample"])
        _run(instance, job, ["source_records"], "sample")
        _run(instance, job, ["grouped_metadata", "metadata_rejects", "image_facts"], SHARD)
        tree = _meta(instance, "image_facts")
        _run(instance, job, ["image_facts"], SHARD, PARAGRAPHS)
        first = _meta(instance, "image_facts")
        _run(instance, job, ["image_facts"], SHARD, PARAGRAPHS)
        again = _meta(instance, "image_facts")
    facts = ParquetStore(home / "store").read("image_facts", "sample", SHARD_NO)
    layout = facts.filter((pl.col("kind") == "object") & pl.col("text").str.contains("centre (", literal=True)
                          | (pl.col("note") == "layout paragraph"))
    assert layout.height > 0 and set(facts["layout_prompt_version"]) == {1}
    assert first["llm_sent"].value == layout.height  # the layout requests only: the QA rewrites were cached
    assert first["llm_cache_hits"].value == tree["llm_sent"].value
    assert again["llm_sent"].value == 0
    notes = layout["note"].to_list()
    explained = ("fallback: omits", "fallback: too_short", "fallback: llm_")
    assert all(n == "layout paragraph" or n.startswith(explained) for n in notes), notes
    assert first.get("layout_paragraphs") is not None


def test_sampling_lanes_overlap_an_endpoints_requests_and_stay_single_for_a_model_in_process():
    """Two lanes when requests go to a server (one lane's work overlaps the other's requests); one
    with llama.cpp or vLLM in this process, whose batches lanes would only halve; a set value wins."""
    from visit_assets.defs.conversations.assets import GenerationConfig, lanes_for

    assert lanes_for(GenerationConfig(), "openai") == 2
    assert lanes_for(GenerationConfig(), "llama_cpp") == lanes_for(GenerationConfig(), "vllm") == 1
    assert lanes_for(GenerationConfig(lanes=3), "llama_cpp") == 3
