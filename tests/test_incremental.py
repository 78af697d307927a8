"""Incremental regeneration on the sample (echo LLM backend, whole graph): after a small edit only
the affected requests reach the backend, and untouched partitions keep their data versions.

One module-scoped run of bench/incremental.py's scenario: full run, 2 captions edited, 1 seed
instruction edited, 1 prompt template bumped (each followed by a whole-graph re-run).

With echo no generated instruction parses, so nothing is clustered or matched and MM-Instruct
answers are never requested: what is checked is the per-image path (instruction generation,
Instructify conversations and verification). With a real model, a changed instruction also
re-clusters the dataset's instructions and re-matches every image, so MM-Instruct answers are
re-sent for other images too (bench/incremental.py shows it)."""

import importlib.util
import sys
from pathlib import Path

import pytest

from visit_assets import settings
from visit_assets.lib.ids import image_id, shard_of

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("bench_incremental", REPO / "bench" / "incremental.py")
bench = sys.modules.setdefault("bench_incremental", importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(bench)

PER_IMAGE_LLM = bench.PER_IMAGE_LLM_ASSETS
# Per-image stages upstream of the dataset-level clustering: an edit elsewhere must not touch them.
CONVERSATION_ROWS = ("conversation_attempts", "generated_conversations", "filtered_conversations",
                     "conversation_rejects")
# one worker runs the module: its fixture (five whole-graph runs) is then built once, not once per worker
pytestmark = pytest.mark.xdist_group("incremental")
INGEST_SIDE = ("grouped_metadata", "metadata_rejects", "image_descriptions", "image_embeddings", "image_facts",
               "generated_instructions")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    home = tmp_path_factory.mktemp("incremental")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VISIT_LLM_BACKEND", "echo")
        steps, edits = bench.scenario(home, log=lambda _: None)
    return home, {s.name: s for s in steps}, edits


def _edited(runs) -> tuple[set[str], int]:
    _, _, edits = runs
    keys = edits["images"]
    shards = {shard_of(k, settings.n_shards()) for k in keys}
    assert len(shards) == 1, "the scenario edits images of one shard"
    return {image_id("sample", k) for k in keys}, shards.pop()


def _per_image_owners(step) -> dict[str, set]:
    return {k: {o for o in owners if o[1] is not None} for k, owners in step.owners.items()}


def test_full_run_sends_each_distinct_request_once(runs):
    _, steps, _ = runs
    full = steps["full"]
    assert full.total("sent") > 0 and full.total("cache_hits") == 0
    assert full.new_cache_rows == full.total("sent") == full.backend_calls
    assert full.executed == full.total_partitions == sum(full.changed.values())


def test_two_edited_captions_send_only_those_images_requests(runs):
    _, steps, _ = runs
    step = steps["captions"]
    edited, shard = _edited(runs)
    # What reached the backend: exactly the cache misses, every one written to the cache.
    assert step.total("sent") == step.new_cache_rows == step.backend_calls > 0
    # Per-image stages sent requests for the two edited images only, and nothing in the other shards.
    assert step.images_sent_for() == edited
    for key, owners in _per_image_owners(step).items():
        assert {o[2] for o in owners} <= edited, (key, owners)
    for (asset, part), sent in step.llm_by_partition.items():
        if asset in PER_IMAGE_LLM and part != str(shard):
            assert sent == 0, (asset, part)
    per_image_keys = [k for k, owners in _per_image_owners(step).items() if owners]
    assert step.sent_per_image_stages() == len(per_image_keys) > 0
    # Everything else sent came from dataset-level stages (the selection's pairwise judge, cluster merges).
    assert step.total("sent") - step.sent_per_image_stages() == step.unattributed_or_dataset_level()
    # The untouched shards of the per-image stages keep their data versions.
    for asset in INGEST_SIDE:
        changed = {p for a, p in step.changed_partitions if a == asset}
        assert changed == {str(shard)}, (asset, changed)


def test_unchanged_shards_keep_generated_conversations_data_version(runs):
    _, steps, _ = runs
    _, shard = _edited(runs)
    changed = {p for a, p in steps["captions"].changed_partitions if a == "generated_conversations"}
    assert changed <= {str(shard)}


def test_seed_edit_resends_only_instructions_shown_that_seed(runs):
    _, steps, edits = runs
    step = steps["seed"]
    seed = edits["seed"]
    assert step.total("sent") == step.new_cache_rows == step.backend_calls
    for asset in INGEST_SIDE[:-1]:  # everything before generated_instructions is untouched
        assert not {p for a, p in step.changed_partitions if a == asset}, asset
    assert ("seed_instructions", None) in step.changed_partitions
    per_image = {k: owners for k, owners in _per_image_owners(step).items() if owners}
    assert per_image, f"seed {seed} was shown to no image: nothing to re-send"
    for key, owners in per_image.items():
        assert all(o[0] == "generated_instructions" and seed in o[4] for o in owners), (key, owners)
    assert step.sent_per_image_stages() == len(per_image)
    assert step.llm["generated_conversations"]["sent"] == 0  # Instructify's prompts do not show seeds


def test_prompt_bump_resends_only_that_prompts_conversations(runs):
    _, steps, edits = runs
    step = steps["prompt"]
    assert edits["prompt_version"] == 2
    assert step.total("sent") == step.new_cache_rows == step.backend_calls > 0
    for key, owners in _per_image_owners(step).items():
        assert owners and all(o[0] in CONVERSATION_ROWS and o[3] == "complex_reasoning" for o in owners), \
            (key, owners)
    assert step.sent_per_image_stages() == step.llm["generated_conversations"]["sent"]
    for asset in INGEST_SIDE:
        assert not {p for a, p in step.changed_partitions if a == asset}, asset


def test_prompt_bump_gives_the_conversation_stage_a_new_version(runs):
    """The stage's code version hashes its prompt files: every shard's conversations get a new data
    version (rows name the new code version), though only that prompt's requests were re-sent."""
    _, steps, _ = runs
    changed = steps["prompt"].changed_partitions
    shards = {str(s) for s in range(settings.n_shards())}
    assert {p for a, p in changed if a == "generated_conversations"} == shards
    assert {p for a, p in changed if a == "conversation_attempts"} == shards
