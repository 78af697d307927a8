"""Regeneration through the real daemon: a dataset dropped into the watched folder reaches its export,
one wave at a time (no dataset-level asset runs before the shards it reads), and a caption edit
regenerates only what depends on it. Expected sets come from the definitions (which assets have an
automation condition, which are per shard) and from the shard function, never from a list here.
"""

from __future__ import annotations

import json
from collections import Counter

import dagster as dg
import pytest
from conftest import Watch, automated_assets, drop_in, partitioned_by_shard, replace_text

from visit_assets import settings
from visit_assets.lib.ids import shard_of

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("dagster_dev")]

DATASET = "sample"
WAVE_TIMEOUT_S = 1200  # an upper bound: a wave took ~5 min here, alone on the machine
EDITED_IMAGE = "astronaut.jpg"
# Stages that read only their own shard's images: a caption edit must re-run them for that shard
# alone. (grouped_metadata re-runs every shard, reading the whole new source_records, and keeps the
# data version of each unchanged shard; the MM-Instruct pool is dataset-wide by the recipe's design,
# so instruction matching and below may re-run for every shard, from the LLM cache.)
PER_IMAGE_STAGES = {"image_descriptions", "image_facts", "image_embeddings", "generated_instructions"}


def expected_partitions(asset: str) -> set[str]:
    if not partitioned_by_shard(asset):
        return {DATASET}
    return {f"{DATASET}|{s}" for s in range(settings.n_shards())}


def all_materialized(watch: Watch, assets: set[str]) -> bool:
    return all(expected_partitions(a) <= set(watch.materializations(a)) for a in assets)


def counts(watch: Watch, assets: set[str]) -> dict[str, Counter]:
    return {a: watch.materializations(a) for a in assets}


def edit_caption(dataset_dir, image: str) -> None:
    path = dataset_dir / "annotations" / "captions.json"
    coco = json.loads(path.read_text())
    image_id = next(i["id"] for i in coco["images"] if i["file_name"] == image)
    annotation = next(a for a in coco["annotations"] if a["image_id"] == image_id)
    annotation["caption"] = "A woman astronaut in an orange suit stands beside a flag, smiling at the camera."
    replace_text(path, json.dumps(coco))


# Four phases, each bounded by its own waits; the whole took about 11 min alone on this machine: the default 15-min
# test timeout leaves too little room on a busy machine (the suite runs in two workers).
@pytest.mark.timeout(3600)
def test_dropped_dataset_reaches_its_export_and_an_edit_regenerates_only_what_depends_on_it(daemon: Watch):
    automated = automated_assets()
    assert {"visit_export", "quality_scores", "generated_conversations"} <= automated
    assert "pairwise_evaluation" not in automated  # on demand only

    dataset_dir = daemon.visit_home / "datasets" / DATASET
    drop_in(settings.sample_dataset(), dataset_dir)
    daemon.wait("every automated asset materialized for the dropped dataset",
                lambda: all_materialized(daemon, automated), WAVE_TIMEOUT_S)
    daemon.settle(WAVE_TIMEOUT_S)
    first = counts(daemon, automated)
    for asset, by_partition in first.items():
        # each partition exactly once: nothing ran early against a parent still being regenerated
        assert by_partition == Counter({p: 1 for p in expected_partitions(asset)}), asset
    assert not daemon.materializations("pairwise_evaluation")
    exports = list((daemon.visit_home / "exports" / DATASET).glob("*/manifest.json"))
    assert len(exports) == 1, exports
    assert daemon.materializations("duckdb_catalog") == Counter({None: 1})  # once the store was quiet
    requests_first = sum(daemon.llm.received.values())
    assert requests_first > 0 and max(daemon.llm.received.values()) == 1  # nothing asked twice

    edited_shard = f"{DATASET}|{shard_of(EDITED_IMAGE, settings.n_shards())}"
    edit_caption(dataset_dir, EDITED_IMAGE)
    daemon.wait("the edited shard's chain to re-run",
                lambda: daemon.materializations("image_facts")[edited_shard] == 2, WAVE_TIMEOUT_S)
    daemon.settle(WAVE_TIMEOUT_S)
    second = counts(daemon, automated)
    ran = {a: second[a] - first[a] for a in automated}
    for asset in PER_IMAGE_STAGES:
        assert set(ran[asset]) == {edited_shard}, (asset, ran[asset])
    for asset, by_partition in ran.items():
        assert max(by_partition.values(), default=0) <= 1, (asset, by_partition)  # no partition twice
    assert ran["source_records"] == Counter({DATASET: 1})
    assert daemon.materializations("duckdb_catalog") == Counter({None: 1})  # same assets: its views read the new files
    assert not daemon.materializations("pairwise_evaluation")
    # the LLM was asked again only for what the edit changed; nothing answered before was re-sent
    assert max(daemon.llm.received.values()) == 1

    # The nightly re-ingest, started as a user would and due every minute here: it re-ingests the
    # dataset; the data is unchanged, so nothing below it runs.
    daemon.cli("schedule", "start", "nightly_reingest")
    daemon.wait("a scheduled re-ingest", lambda: any(
        r.status == dg.DagsterRunStatus.SUCCESS for r in daemon.instance.get_runs(
            dg.RunsFilter(tags={"dagster/schedule_name": "nightly_reingest"}))), 150)
    daemon.cli("schedule", "stop", "nightly_reingest")
    daemon.settle(WAVE_TIMEOUT_S)
    third = counts(daemon, automated)
    assert {a for a in automated if third[a] != second[a]} == {"source_records"}

    # An edited seed instruction, last: the seed sensor re-materializes the seeds, and every shard's
    # instructions regenerate once (what follows them is the same automation as the caption edit
    # above, so the test ends here rather than waiting for a third pass over the whole graph).
    replace_text(daemon.seeds, daemon.seeds.read_text().replace("text: ", "text: Please, ", 1))
    once_more = third["generated_instructions"] + Counter(expected_partitions("generated_instructions"))
    daemon.wait("the edited seeds to reach every shard's instructions",
                lambda: daemon.materializations("generated_instructions") == once_more, WAVE_TIMEOUT_S)
    fourth = counts(daemon, automated)
    assert fourth["source_records"] == third["source_records"] and fourth["image_facts"] == third["image_facts"]
    assert max(daemon.llm.received.values()) == 1  # new seeds, new requests; none answered before sent again

