"""InstructionGPT-4 selection assets end to end on the sample, through real Dagster.

The judge is a scripted backend (score = answer length // 3, capped at 100; pairwise verdict
always "A"), so F and the selection can be recomputed here by hand from the stored raw scores.
The embedder, clustering, Parquet and LLM cache are the real ones.
"""

import base64
import json
import re
import shutil
from fractions import Fraction

import dagster as dg
import numpy as np
import polars as pl
import pytest

from visit_assets import settings
from visit_assets.definitions import build_defs
from visit_assets.defs.llm.resources import LLMResource
from visit_assets.defs.selection.assets import EVAL_VERSION, SELECT_VERSION
from visit_assets.lib.instructify.export import read_export, validate_llava
from visit_assets.lib.llm import LLMCache, LLMClient
from visit_assets.lib.llm.echo_backend import EchoBackend
from visit_assets.lib.llm.types import finish_result
from visit_assets.lib.selection.clustering import AGREEMENT
from visit_assets.lib.selection.text import instruction_and_answer
from visit_assets.lib.storage import ParquetStore
from visit_assets.runner import regenerate, run_dataset

pytestmark = pytest.mark.slow
UPSTREAM = ["source_records", "grouped_metadata", "metadata_rejects", "vlm_descriptions", "image_descriptions",
            "image_embeddings"]
SELECTION = ["imported_conversations", "imported_rejects", "quality_scores", "image_clusters", "selected_subset",
             "selection_ranking"]
SHARDS = range(4)


class ScriptedJudge(EchoBackend):
    """Grades by answer length; prefers whatever is shown first (a position-biased judge)."""

    def answer(self, request):
        user = request.messages[-1]["content"]
        if "Rate how good this answer is" in user:
            answer = user.split("Answer:\n", 1)[1].rsplit("\n\nReply with the score", 1)[0]
            text = f"Score: {min(100, len(answer) // 3)}"
        elif "Verdict: A" in user:
            text = "A is better.\nVerdict: A"
        else:
            return super().answer(request)
        return finish_result(request, text, prompt_tokens=1, completion_tokens=3, finish_reason="stop",
                             model=self.identity)


class ScriptedLLM(LLMResource):
    def get_client(self) -> LLMClient:
        key = self.resolved_cache_path()
        if key not in _CLIENTS:
            _CLIENTS[key] = LLMClient(ScriptedJudge(name="scripted-judge", weights="test-script"), LLMCache(key))
        return _CLIENTS[key]


_CLIENTS: dict = {}


def _meta(instance, key):
    return instance.get_latest_materialization_event(dg.AssetKey(key)).asset_materialization.metadata


def _expected_selection(scores: pl.DataFrame, clusters: pl.DataFrame, weights: dict, alpha: Fraction,
                        scaling: str = "reference", rule: str = "paper") -> list:
    """The paper's and the public code's arithmetic, written out independently of lib.selection."""
    frame = scores.join(clusters.select("image_id", "cluster"), on="image_id", how="left")  # scaled over the pool
    present = {n: w for n, w in weights.items() if frame[f"{n}_raw"].is_not_null().any()}
    total_w = sum(present.values())
    F = np.zeros(frame.height)
    den = np.zeros(frame.height)
    for name, w in present.items():
        raw = frame[f"{name}_raw"].to_numpy().astype(float)
        if scaling == "min-max":
            lo, hi = np.nanmin(raw), np.nanmax(raw)
            scaled = (raw - lo) / (hi - lo) * 100
        else:  # full_score.py: raw values, the length as 10 x characters / 1009
            scaled = raw * 10 / 1009 if name == "length" else raw
        ok = np.isfinite(scaled)
        F[ok] += w / total_w * scaled[ok]
        den[ok] += w / total_w
    complete = den > 0 if scaling == "min-max" else np.isclose(den, 1.0)  # reference: no mean over part of the scores
    frame = frame.with_columns(pl.Series("F", np.where(complete, F / np.where(den > 0, den, 1), np.nan)).fill_nan(None))
    frame = frame.filter(pl.col("cluster").is_not_null())
    n = frame.height
    chosen = []
    for _, group in frame.group_by("cluster"):
        share = alpha * group.height / n
        quota = min(group.height, round(share) if rule == "paper" else max(1, int(share * Fraction(204, 200))))
        chosen.append(group.sort(["F", "conversation_id"], descending=[True, False], nulls_last=True).head(quota))
    best = pl.concat(chosen).sort(["F", "conversation_id"], descending=[True, False], nulls_last=True)
    if rule == "reference":  # then the global top alpha
        best = best.head(round(alpha))
    return sorted(best["conversation_id"].to_list())


def test_sample_selection_scores_clusters_selects_exports_and_resends_nothing(home):
    defs = build_defs(llm=ScriptedLLM())
    op_config = {"selected_subset": {"alpha_fraction": 0.5}}
    with dg.instance_for_test() as instance:
        run_dataset(defs, "sample", instance, only=UPSTREAM + SELECTION + ["pairwise_evaluation", "visit_export"],
                    op_config=op_config, log=lambda _: None)
        quality_meta, selected_meta = _meta(instance, "quality_scores"), _meta(instance, "selected_subset")
        eval_meta = _meta(instance, "pairwise_evaluation")
        run_dataset(defs, "sample", instance, only=["quality_scores", "pairwise_evaluation"], log=lambda _: None)
        assert _meta(instance, "quality_scores")["llm_sent"].value == 0  # answers exist: nothing paid twice
        assert _meta(instance, "pairwise_evaluation")["llm_sent"].value == 0
        # imported conversations kept out of the pool (to serve as the baseline): nothing here is generated
        run_dataset(defs, "sample", instance, only=["selected_subset", "selection_ranking"], log=lambda _: None,
                    op_config={"selected_subset": {"pool": "generated", "method": "random"}})
        left_out = ParquetStore(home / "store").read("selection_ranking", "sample")
        assert left_out.height and set(left_out["outcome"]) == {"not_in_pool"}
        run_dataset(defs, "sample", instance, only=["selected_subset", "selection_ranking"], op_config=op_config,
                    log=lambda _: None)  # back to the defaults for the checks below
    store = ParquetStore(home / "store")
    items = json.loads((home / "datasets/sample/conversations/existing.json").read_text())
    imported, rejects = store.read("imported_conversations", "sample"), store.read("imported_rejects", "sample")
    assert imported.height + rejects.height == len(items)  # nothing lost
    qc_rejected = set(store.read_shards("metadata_rejects", "sample", SHARDS)["image_key"].drop_nulls())
    assert rejects.height and set(rejects["reason"]) == {"image_failed_metadata_qc"}
    assert rejects["metadata_qc"].is_not_null().all()
    assert {json.loads(d)["image"] for d in rejects["detail"]} <= qc_rejected  # e.g. the 64 px image

    scores = store.read("quality_scores", "sample")
    assert scores.height == imported.height and scores["conversation_id"].n_unique() == scores.height
    answers = [instruction_and_answer(t)[1] for t in scores["turns"].to_list()]
    assert scores["judge_raw"].to_list() == [float(min(100, len(a) // 3)) for a in answers]
    assert scores["length_raw"].to_list() == [float(len(a)) for a in answers]
    assert set(scores["judge_model"]) == {"scripted-judge@test-script"}
    assert all("description-answer similarity" in m for m in scores["clip_model"])  # no CLIP weights: says so
    assert scores["reward_raw"].null_count() == scores.height and scores["reward_model"].null_count() == scores.height
    assert "none configured" in quality_meta["score_models"].value["reward"]
    assert scores["clip_scaled"].min() == 0.0 and scores["clip_scaled"].max() == 100.0

    clusters = store.read("image_clusters", "sample")
    assert clusters.height == store.read_shards("grouped_metadata", "sample", SHARDS).height
    assert set(clusters["method"]) == {"spectral-exact"} and clusters["cluster"].n_unique() == 10
    assert set(clusters["method_agreement"]) == {AGREEMENT["spectral-exact"]}
    assert selected_meta["clustering_method"].value == [{"method": "spectral-exact",
                                                         "method_agreement": AGREEMENT["spectral-exact"]}]
    subset = store.read("selected_subset", "sample")
    weights = {"clip": 0.53, "length": 0.10, "reward": 0.10, "judge": 0.27}
    assert sorted(subset["conversation_id"]) == _expected_selection(scores, clusters, weights,
                                                                    Fraction(1, 2) * scores.height)
    used = selected_meta["weights_used"].value
    assert used["reward"] == 0.0 and abs(sum(used.values()) - 1) < 1e-12 and abs(used["clip"] - 0.53 / 0.9) < 1e-12
    png = re.search(r"base64,([A-Za-z0-9+/=]+)\)", selected_meta["score_plot"].value).group(1)
    assert base64.b64decode(png).startswith(b"\x89PNG")
    ranking = store.read("selection_ranking", "sample")
    assert ranking.height == scores.height and ranking.filter(pl.col("selected")).height == subset.height
    # each row names the code that made it: the selection's, not the scores' it was joined from
    assert set(subset["code_version"]) == set(ranking["code_version"]) == {SELECT_VERSION} != set(scores["code_version"])

    export = store.read("visit_export", "sample")
    folder = home / "exports" / "sample" / export["export_version"][0]
    llava = json.loads((folder / "llava.json").read_text())
    assert validate_llava(llava) == [] and sorted(i["id"] for i in llava) == sorted(subset["conversation_id"])

    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["changes_since_previous_dataset_version"]["previous_dataset_version"] is None  # the first version

    pairs = store.read("pairwise_evaluation", "sample")
    siblings = ranking.group_by("image_id").agg(pl.col("selected").sum().alias("s"), pl.len().alias("n"))
    pairable = sum(min(s, n - s) for s, n in siblings.select("s", "n").iter_rows())
    assert pairs.height == pairable > 0
    # the judge always says "A": each order favours a different side, so the paper's rule calls every pair a tie
    assert set(pairs["verdict_ab"]) == {"A"} and set(pairs["verdict_ba"]) == {"A"} and set(pairs["outcome"]) == {"tie"}
    assert eval_meta["win_tie_lose"].value["tie"] == pairs.height
    assert set(pairs["dataset"]) == {"sample"} and set(pairs["code_version"]) == {EVAL_VERSION}
    assert set(pairs["dataset_version"]) == set(scores["dataset_version"])
    assert store.current("pairwise_evaluation", "sample")["dataset_version"] == scores["dataset_version"][0]


def test_an_imported_scored_dataset_is_reselected_without_regenerating(home):
    """Scores shipped with the data are used as given (with their model names); no judge request."""
    src = settings.sample_dataset()
    ds = home / "datasets" / "scored"
    shutil.copytree(src / "images", ds / "images")
    shutil.copytree(src / "annotations", ds / "annotations")
    keys = ["astronaut.jpg", "coffee.jpg", "chelsea_cat.jpg", "rocket_launch.jpg", "grass.jpg"]
    rows = [{"image": k, "instruction": f"Describe {k} ({i}).", "answer": "x" * (10 + 7 * j + i),
             "clip_score": 20.0 + 3 * j + i, "clip_model": "ViT-L-14@openai", "judge_score": 40 + 10 * i + j,
             "judge_model": "gpt-4"} for j, k in enumerate(keys) for i in range(3)]
    (ds / "conversations").mkdir()
    pl.DataFrame(rows).write_parquet(ds / "conversations" / "scored.parquet")
    llm = ScriptedLLM()
    with dg.instance_for_test() as instance:
        run_dataset(build_defs(llm=llm), "scored", instance, only=UPSTREAM + SELECTION, log=lambda _: None,
                    op_config={"selected_subset": {"alpha_count": 5, "scaling": "min-max", "quota_rule": "reference"}})
    assert llm.get_client().backend.calls == 0  # every row brought its judge score: no request at all
    store = ParquetStore(home / "store")
    scores = store.read("quality_scores", "scored").sort("image_key", "instruction")
    assert scores.height == len(rows)
    expected = sorted(((r["image"], r["instruction"]), r["clip_score"], r["judge_score"]) for r in rows)
    assert scores.select("clip_raw", "judge_raw").rows() == [(c, float(j)) for _, c, j in expected]
    assert set(scores["clip_model"]) == {"ViT-L-14@openai"} and set(scores["judge_model"]) == {"gpt-4"}
    assert set(scores["judge_status"]) == {"imported"}
    clusters = store.read("image_clusters", "scored")
    subset = store.read("selected_subset", "scored")
    assert sorted(subset["conversation_id"]) == _expected_selection(scores, clusters, {
        "clip": 0.53, "length": 0.10, "reward": 0.10, "judge": 0.27}, Fraction(5), "min-max", "reference")
    assert subset.height == 5  # the reference rule cuts to exactly alpha
    ranking = store.read("selection_ranking", "scored")
    assert json.loads(ranking["selection_method"][0]) == {"method": "per-cluster", "pool": "all",
                                                          "quota_rule": "reference", "scaling": "min-max"}


def test_the_export_manifest_says_what_changed_since_the_previous_dataset_version(home):
    defs = build_defs(llm=ScriptedLLM())
    steps = UPSTREAM + SELECTION + ["visit_export"]
    with dg.instance_for_test() as instance:
        run_dataset(defs, "sample", instance, only=steps, log=lambda _: None)
        path = home / "datasets/sample/annotations/captions.json"
        coco = json.loads(path.read_text())
        target = next(a for a in coco["annotations"] if a["image_id"] == 1)  # astronaut.jpg
        target["caption"] = "An astronaut in an orange suit poses beside a model of the space shuttle."
        path.write_text(json.dumps(coco))
        run_dataset(defs, "sample", instance, only=steps, log=lambda _: None)
    store = ParquetStore(home / "store")
    export = store.read("visit_export", "sample")
    manifest = json.loads((home / "exports/sample" / export["export_version"][0] / "manifest.json").read_text())
    changes = manifest["changes_since_previous_dataset_version"]
    assert changes["previous_dataset_version"] and changes["previous_dataset_version"] != changes["dataset_version"]
    grouped = changes["assets"]["grouped_metadata"]
    assert grouped["changed"] == 1 and grouped["added"] == grouped["removed"] == 0
    assert grouped["reasons"] == {"metadata": 1}
    astronaut = store.read_shards("grouped_metadata", "sample", SHARDS).filter(pl.col("image_key") == "astronaut.jpg")
    assert grouped["examples"]["changed"] == astronaut["image_id"].to_list()


def test_a_dataset_with_nothing_to_select_gives_empty_tables_not_errors(home):
    shutil.rmtree(home / "datasets/sample/conversations")  # no imported data, no generated conversations
    with dg.instance_for_test() as instance:
        run_dataset(build_defs(llm=ScriptedLLM()), "sample", instance,
                    only=UPSTREAM + SELECTION + ["pairwise_evaluation", "visit_export"], log=lambda _: None)
    store = ParquetStore(home / "store")
    for asset in ("quality_scores", "selected_subset", "selection_ranking", "pairwise_evaluation", "visit_export"):
        assert store.read(asset, "sample").height == 0, asset
    assert store.read("image_clusters", "sample").height == 15  # the images are still clustered


def test_an_edited_imported_file_regenerates_the_selection_chain_and_nothing_else(home):
    """As the sensors would: re-ingest, then regenerate wave by wave: only the chain below the imported
    file runs (not the clusters, not the conversations, not the on-demand evaluation)."""
    defs = build_defs(llm=ScriptedLLM())
    job = defs.resolve_implicit_global_asset_job_def()
    with dg.instance_for_test() as instance:
        run_dataset(defs, "sample", instance, log=lambda _: None)
        assert regenerate(defs, "sample", instance, log=lambda _: None) == []  # all up to date
        path = home / "datasets/sample/conversations/existing.json"
        items = json.loads(path.read_text())
        items[0]["conversations"][1]["value"] += " The helmet visor reflects the studio lights."
        path.write_text(json.dumps(items))
        assert job.execute_in_process(instance=instance, partition_key="sample",
                                      asset_selection=[dg.AssetKey("source_records")]).success
        ran = regenerate(defs, "sample", instance, log=lambda _: None)
        # every shard re-groups from the new source records, keeping its data version: nothing below runs
        assert {a for partition, assets in ran if partition != "sample" for a in assets} == {
            "grouped_metadata", "metadata_rejects"}
        assert {a for partition, assets in ran if partition == "sample" for a in assets} == {
            "imported_conversations", "imported_rejects", "quality_scores", "selected_subset", "selection_ranking",
            "visit_export"}
        assert _meta(instance, "quality_scores")["llm_sent"].value == 1  # only the edited answer is judged
    scores = ParquetStore(home / "store").read("quality_scores", "sample")
    assert scores.filter(pl.col("answer").str.contains("visor reflects")).height == 1


def test_imported_flat_rows_and_llava_items_are_exported_as_valid_llava(home):
    """Issue #19: existing data in every accepted form (flat rows and LLaVA items, JSON / JSONL /
    Parquet, with and without <image>) goes import -> scores -> selection -> export, and the export
    is valid LLaVA; an image that metadata QC rejected says so on its imported items' rejects."""
    src = settings.sample_dataset()
    ds = home / "datasets" / "reselect"
    shutil.copytree(src / "images", ds / "images")
    shutil.copytree(src / "annotations", ds / "annotations")
    keys = ["astronaut.jpg", "coffee.jpg", "chelsea_cat.jpg", "rocket_launch.jpg", "grass.jpg", "brick_wall.jpg"]
    flat = [{"image": k, "instruction": f"What stands out in this photo? ({i})", "answer": f"{k} answer {i} " * (3 + i),
             "clip_score": 20.0 + j + i, "clip_model": "ViT-L-14@openai", "judge_score": 50 + i + j,
             "judge_model": "gpt-4"} for j, k in enumerate(keys) for i in range(2)]
    (ds / "conversations").mkdir()
    pl.DataFrame(flat).write_parquet(ds / "conversations" / "flat.parquet")  # no <image>
    with_token = [{**r, "instruction": "<image>\n" + r["instruction"].replace("stands out", "is shown")} for r in flat]
    (ds / "conversations" / "flat.jsonl").write_text("".join(json.dumps(r) + "\n" for r in with_token))
    llava = [{"id": f"l{j}", "image": k, "conversations": [
        {"from": "human", "value": "Describe the image."}, {"from": "gpt", "value": f"It shows {k}. " * 4},
        {"from": "human", "value": "Anything else?"}, {"from": "gpt", "value": "Nothing more."}]}
        for j, k in enumerate(keys + ["cat_eye_tiny.jpg"])]  # the 64 px image: rejected by QC
    (ds / "conversations" / "llava.json").write_text(json.dumps(llava))
    misplaced = {"image": "coffee.jpg", "conversations": [{"from": "human", "value": "Describe."},
                                                         {"from": "gpt", "value": "<image> A cup."}]}
    (ds / "conversations" / "llava.jsonl").write_text(
        "".join(json.dumps({**item, "conversations": [{"from": "human", "value": "<image>\nDescribe the image."},
                                                      *item["conversations"][1:]]}) + "\n" for item in llava[:3])
        + json.dumps(misplaced) + "\n")
    with dg.instance_for_test() as instance:
        run_dataset(build_defs(llm=ScriptedLLM()), "reselect", instance, only=UPSTREAM + SELECTION + ["visit_export"],
                    op_config={"selected_subset": {"alpha_fraction": 0.5}}, log=lambda _: None)
    store = ParquetStore(home / "store")
    imported, rejects = store.read("imported_conversations", "reselect"), store.read("imported_rejects", "reselect")
    given = len(flat) + len(with_token) + len(llava) + 4
    assert imported.height + rejects.height == given  # nothing lost
    assert sorted(rejects.select("reason", "metadata_qc").rows()) == [
        # llava.jsonl repeats three llava.json items with the token written out: the same item
        ("duplicate", None), ("duplicate", None), ("duplicate", None),
        ("image_failed_metadata_qc", "image_too_small"), ("image_token_misplaced", None)]
    assert imported.height == len(flat) + len(with_token) + len(keys)
    firsts = [t[0]["value"] for t in imported["turns"].to_list()]
    assert all(v.count("<image>") == 1 for v in firsts)
    export = store.read("visit_export", "reselect")
    items, manifest = read_export(home / "exports" / "reselect" / export["export_version"][0])  # validated
    subset = store.read("selected_subset", "reselect")
    assert len(items) == subset.height > 0 and {i["id"] for i in items} == set(subset["conversation_id"])
    assert manifest["counts"]["conversations"] == len(items)


def test_more_images_than_exact_max_are_clustered_by_the_method_that_meets_the_bar(home):
    """Above exact_max the rows and the metadata say the approximation and its measured agreement
    (the wiring only: its agreement with exact is pinned in tests/selection on real text)."""
    with dg.instance_for_test() as instance:
        run_dataset(build_defs(llm=ScriptedLLM()), "sample", instance, only=UPSTREAM + ["image_clusters"],
                    op_config={"image_clusters": {"exact_max": 5}}, log=lambda _: None)
        meta = instance.get_latest_materialization_event(dg.AssetKey("image_clusters")).asset_materialization.metadata
    clusters = ParquetStore(home / "store").read("image_clusters", "sample")
    assert clusters.height > 5 and set(clusters["method"]) == {"spectral-ann"}
    assert set(clusters["method_agreement"]) == {AGREEMENT["spectral-ann"]}
    assert meta["clustering"].value["params"]["neighbour_recall"] > 0
