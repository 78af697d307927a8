"""visit_export's run config `source`: the selected subset (default) or every filtered conversation
of the dataset, through real Dagster on the sample.

The LLM is scripted: Instructify replies in the short formats its types ask for (multiple choice,
yes/no, one-line captions; the verifier says True), MM-Instruct answers are long or ten words, the
fit check says yes, the judge grades by length. So the graph produces real accepted conversations
of both recipes, and the short Instructify ones must survive the filters. Its weights are
`no-model`: the manifest must say so.
"""

import hashlib
import json

import dagster as dg
import polars as pl
import pytest

from visit_assets.definitions import build_defs
from visit_assets.defs.llm.resources import LLMResource
from visit_assets.defs.resources import StoreResource
from visit_assets.lib.instructify.export import read_export
from visit_assets.lib.instructify.registry import load_registry
from visit_assets.lib.llm import LLMCache, LLMClient
from visit_assets.lib.llm.echo_backend import EchoBackend
from visit_assets.lib.llm.types import finish_result
from visit_assets.lib.mminstruct import filters
from visit_assets.lib.models.identity import NO_MODEL
from visit_assets.lib.storage import ParquetStore
from visit_assets.runner import regenerate, run_dataset

pytestmark = pytest.mark.slow
SHARDS = range(4)
# Instructify's short types only (their registry weights are small), two iterations per image
SMALL = {"generated_conversations": {"max_iterations": 2, "prompt_weights": {
    i: (1.0 if i in ("multiple_choice", "yes_no", "short_caption") else 0.0) for i in load_registry().ids}}}


def _n(request) -> int:
    return int(hashlib.sha256(json.dumps([request.messages, request.params.seed], default=str).encode()).hexdigest(), 16)


INSTRUCTIONS = ("Write a short story about what is happening in this image.",
                "Describe the mood of this image for a friend who cannot see it.",
                "Write a social-media post about this image.")


class ScriptedModel(EchoBackend):
    """Answers each prompt of the graph in its expected format; anything else is echoed."""

    def answer(self, request):
        system = next((m["content"] for m in request.messages if m["role"] == "system"), "")
        user = request.messages[-1]["content"]
        n = _n(request) % 1000
        if "You check answers about an image" in system:
            text = "True\nFacts: 1"
        elif "numbered facts" in system and "multiple-choice" in system:
            text = f"Question: Which colour is thing {n}?\nA) blue\nB) red\nC) green\nAnswer: B) red"
        elif "numbered facts" in system and "yes/no" in system:
            text = (f"Question: Is thing {n} black?\nAnswer: No, the dog is brown, not black.\n\n"
                    f"Question: Is thing {n} outdoors?\nAnswer: Yes, it stands on the grass.")
        elif "numbered facts" in system:
            text = f"Question: What does this picture show ({n})?\nAnswer: Two children build a sandcastle on a sunny beach."
        elif "You write new task instructions" in system or "You consolidate groups" in system:
            text = INSTRUCTIONS[n % len(INSTRUCTIONS)]
        elif "You are a helpful assistant that can see images" in system:  # MM-Instruct answers
            text = ("A person stands in the middle of the scene, and the light falls softly across the room "
                    "while a few objects rest on the table behind them." if n % 2 else
                    "A person stands in the middle of the bright room.")
        elif "You judge whether an instruction" in system:
            text = "Yes"
        elif "Rate how good this answer is" in user:
            text = "Score: 50"
        elif "Verdict: A" in user:
            text = "Verdict: A"
        else:
            return super().answer(request)
        return finish_result(request, text, prompt_tokens=1, completion_tokens=len(text.split()), finish_reason="stop",
                             model=self.identity)


class ScriptedLLM(LLMResource):
    def get_client(self) -> LLMClient:
        key = self.resolved_cache_path()
        if key not in _CLIENTS:
            _CLIENTS[key] = LLMClient(ScriptedModel(name="scripted", weights=NO_MODEL), LLMCache(key))
        return _CLIENTS[key]


_CLIENTS: dict = {}


def _export(home, store):
    version = store.read("visit_export", "sample")["export_version"][0]
    return read_export(home / "exports" / "sample" / version)  # checksums and LLaVA schema checked


def test_export_source_filtered_holds_every_filtered_conversation_and_selected_the_subset(home):
    defs = build_defs(llm=ScriptedLLM())
    store = ParquetStore(home / "store")
    with dg.instance_for_test() as instance:
        run_dataset(defs, "sample", instance, op_config={**SMALL, "visit_export": {"source": "filtered"}},
                    log=lambda _: None)
        items, manifest = _export(home, store)
        filtered = store.read_shards("filtered_conversations", "sample", SHARDS)
        per_shard = [store.read("filtered_conversations", "sample", s).height for s in SHARDS]
        assert len(items) == filtered.height == sum(per_shard) == manifest["counts"]["conversations"]
        assert sorted(i["id"] for i in items) == sorted(filtered["conversation_id"])
        assert sum(1 for h in per_shard if h) > 1  # the export really spans shards
        assert manifest["export_source"] == "filtered"
        assert set(manifest["filtered_data_versions"]) == {str(s) for s in SHARDS}
        assert manifest["not_real_models"] == ["scripted@no-model"]
        meta = instance.get_latest_materialization_event(dg.AssetKey("visit_export")).asset_materialization.metadata
        assert meta["export_source"].value == "filtered"

        # Task A through the assets: short Instructify answers are kept, MM-Instruct's ten-word ones are not
        instructify = filtered.filter(pl.col("recipe") == filters.INSTRUCTIFY)
        short = [t["value"] for turns in instructify["turns"] for t in turns if t["from"] == "gpt"]
        assert {"B) red", "No, the dog is brown, not black.",
                "Two children build a sandcastle on a sunny beach."} <= set(short)
        rejects = store.read_shards("conversation_rejects", "sample", SHARDS)
        assert rejects.filter(pl.col("recipe") == filters.INSTRUCTIFY).height == 0
        mm_reasons = set(rejects.filter(pl.col("recipe") == filters.MMINSTRUCT)["reason"])
        assert filters.TOO_SHORT in mm_reasons
        assert filtered.filter(pl.col("recipe") == filters.MMINSTRUCT).height > 0
        settings = instance.get_latest_materialization_event(
            dg.AssetKey("filtered_conversations")).asset_materialization.metadata["filter_settings"].value
        assert "too_short" not in settings["rules_by_recipe"][filters.INSTRUCTIFY]

        # the default source: the selected subset, in another folder
        run_dataset(defs, "sample", instance, only=["visit_export"], log=lambda _: None)
        selected_items, selected_manifest = _export(home, store)
        subset = store.read("selected_subset", "sample")
        assert selected_manifest["export_source"] == "selected"
        assert sorted(i["id"] for i in selected_items) == sorted(subset["conversation_id"])
        assert selected_manifest["version"] != manifest["version"]
        assert (home / "exports" / "sample" / manifest["version"]).is_dir()  # the filtered export stays

        # the store resource says where exports go (a cluster's bucket mount), not the settings module
        elsewhere = build_defs(llm=ScriptedLLM(), store=StoreResource(exports_root=str(home / "bucket")))
        run_dataset(elsewhere, "sample", instance, only=["visit_export"], log=lambda _: None)
        moved_items, moved = read_export(home / "bucket" / "sample" / selected_manifest["version"])
        assert moved["version"] == selected_manifest["version"] and moved_items == selected_items

        # the added dependency leaves the regeneration waves with nothing to do
        assert regenerate(defs, "sample", instance, log=lambda _: None) == []


def test_export_source_filtered_refuses_a_dataset_whose_shards_were_never_filtered(home):
    defs = build_defs(llm=ScriptedLLM())
    with dg.instance_for_test() as instance:
        with pytest.raises(Exception, match="filtered_conversations is not materialized"):
            run_dataset(defs, "sample", instance, only=["source_records", "visit_export"],
                        op_config={"visit_export": {"source": "filtered"}}, log=lambda _: None)


def test_export_source_is_validated_by_the_config_schema():
    from pydantic import ValidationError

    from visit_assets.defs.conversations.assets import ExportConfig
    assert ExportConfig().source == "selected"
    with pytest.raises(ValidationError, match="Input should be 'selected' or 'filtered'"):
        ExportConfig(source="everything")
