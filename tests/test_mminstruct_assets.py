"""MM-Instruct assets on the sample through real Dagster, the real packaged LLM and embedder."""

import dagster as dg
import numpy as np
import polars as pl
import pytest

from visit_assets.definitions import defs
from visit_assets.lib.mminstruct.seeds import load_seeds
from visit_assets.lib.storage import ParquetStore
from visit_assets.runner import run_dataset

pytestmark = pytest.mark.slow
# The instruction side only: the answers (generated_conversations and its filters) are exercised with
# the real model by tests/test_instructify_assets.py and tests/instructify/test_instructify_llama_slow.py,
# and through a competent stand-in, MM-Instruct's included, by tests/test_rehearsal.py. Generating
# them here with the 135M model took minutes and checked nothing those do not.
STEPS = ["source_records", "grouped_metadata", "metadata_rejects", "vlm_descriptions", "image_descriptions",
         "image_embeddings", "seed_instructions", "generated_instructions", "clustered_instructions", "instruction_matches"]


def _meta(instance, key):
    return instance.get_latest_materialization_event(dg.AssetKey(key)).asset_materialization.metadata


def test_instruction_side_materializes_with_lineage_and_resends_nothing(home):
    with dg.instance_for_test() as instance:
        run_dataset(defs, "sample", instance, only=STEPS, log=lambda _: None)
        first = _meta(instance, "generated_instructions")
        run_dataset(defs, "sample", instance, only=["generated_instructions"], log=lambda _: None)
        again = _meta(instance, "generated_instructions")
        clustering = _meta(instance, "clustered_instructions")
    assert first["llm_sent"].value > 0 and again["llm_sent"].value == 0
    # MM-Instruct's diversity and length figures, over what was generated
    ok_count = clustering["generated_ok"].value
    assert (clustering["diversity"].value["instructions"] == ok_count
            == clustering["instruction_words"].value["generated"]["n"])
    assert "data:image/png;base64," in clustering["length_plot"].value
    store = ParquetStore(home / "store")
    shards = range(4)
    grouped = store.read_shards("grouped_metadata", "sample", shards)
    generated = store.read_shards("generated_instructions", "sample", shards)
    assert sorted(generated["image_id"]) == sorted(grouped["image_id"])  # one attempt per image, none lost
    seed_ids = {s.id for s in load_seeds()}
    assert all(len(ids) == 3 and set(ids) <= seed_ids for ids in generated["seed_ids"])
    assert generated["status"].null_count() == 0
    matches = store.read_shards("instruction_matches", "sample", shards)
    clustered = store.read("clustered_instructions", "sample")
    merged_ok = clustered.filter(pl.col("status") == "ok")
    if merged_ok.height:  # the 135M model may fail every merge; then no image can be matched, and that is recorded
        assert matches.height == grouped.height
        assert set(matches["matcher"]) == {"description-text"}
        assert set(matches["instruction_id"]) <= set(merged_ok["instruction_id"])
        assert ((matches["probability"] > 0) & (matches["probability"] <= 1)).all()
        assert all(np.all(np.diff(sims) <= 1e-9) for sims in matches["top_similarities"])  # top-k is sorted
    else:
        assert matches.height == 0


def test_seed_file_sensor_requests_only_on_change(home, tmp_path, monkeypatch):
    import shutil

    from visit_assets.defs.mminstruct.sensors import seed_file_sensor
    from visit_assets.defs.resources import StoreResource
    from visit_assets.lib.mminstruct import seeds as seeds_mod

    resources = {"store": StoreResource(root=str(home / "store"))}
    with dg.instance_for_test() as instance:
        tick = lambda: seed_file_sensor(dg.build_sensor_context(instance=instance, resources=resources))  # noqa: E731
        assert len(tick().run_requests) == 1  # never materialized
        run_dataset(defs, "sample", instance, only=["seed_instructions"], log=lambda _: None)
        assert not tick().run_requests
        edited = tmp_path / "seeds.yaml"
        shutil.copy(seeds_mod.DEFAULT_SEEDS_PATH, edited)
        edited.write_text(edited.read_text().replace("Write a", "Compose a", 1))
        monkeypatch.setattr(seeds_mod, "DEFAULT_SEEDS_PATH", edited)
        assert len(tick().run_requests) == 1
