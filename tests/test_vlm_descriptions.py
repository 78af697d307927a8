"""vlm_descriptions through real Dagster, with the stand-in as the vision-language model (it reads
the pixels of the images it is sent): the rule picks the thin images, their descriptions lead
image_descriptions, the others are untouched, nothing is sent twice, and with no describer
configured nothing changes at all."""

import dagster as dg
import polars as pl
import pytest

from visit_assets.definitions import build_defs, defs
from visit_assets.defs.llm.resources import LLMResource, LLMRoleConfig
from visit_assets.lib.standin import role_model
from visit_assets.lib.standin.faults import FaultPlan
from visit_assets.lib.standin.server import StandInServer
from visit_assets.lib.storage import ParquetStore
from visit_assets.runner import run_dataset

pytestmark = pytest.mark.slow
STEPS = ["source_records", "grouped_metadata", "metadata_rejects", "vlm_descriptions", "image_descriptions"]
SHARDS = range(4)


def _read(home, asset) -> pl.DataFrame:
    return ParquetStore(home / "store").read_shards(asset, "sample", list(SHARDS))


def _versions(home) -> list[str]:
    store = ParquetStore(home / "store")
    return [store.current("image_descriptions", "sample", s)["data_version"] for s in SHARDS]


def _describer(base_url: str) -> LLMResource:
    return LLMResource(describer=LLMRoleConfig(backend="openai", base_urls=base_url, served_model=role_model("describer"),
                                               api_key_env="none"))


def test_thin_images_are_described_by_the_vlm_and_nothing_else_changes(home):
    with dg.instance_for_test() as instance:
        run_dataset(defs, "sample", instance, only=STEPS, log=lambda _: None)
        meta = instance.get_latest_materialization_event(dg.AssetKey("vlm_descriptions")).asset_materialization.metadata
    assert "not configured" in meta["describer"].value and _read(home, "vlm_descriptions").height == 0
    before, versions_before = _read(home, "image_descriptions"), _versions(home)
    assert set(before["source"]) == {"metadata"}

    threshold = int(before["n_facts"].min())  # the thinnest images count as thin, the others do not
    thin = set(before.filter(pl.col("n_facts") <= threshold)["image_id"])
    assert 0 < len(thin) < before.height
    config = {"vlm_descriptions": {"thin_max_facts": threshold}}
    with StandInServer(FaultPlan({})) as server, dg.instance_for_test() as instance:
        described = build_defs(llm=_describer(server.base_url))
        run_dataset(described, "sample", instance, op_config=config, only=STEPS, log=lambda _: None)
        sent = len(server.log)
        run_dataset(described, "sample", instance, op_config=config, only=STEPS, log=lambda _: None)
        assert len(server.log) == sent == len(thin)  # one request per thin image, none sent again
    vlm = _read(home, "vlm_descriptions")
    assert set(vlm["image_id"]) == thin and vlm["kept"].all()
    assert set(vlm["model"]) == {f"{role_model('describer')}@stand-in"}
    assert vlm["vlm_description"].str.contains(r"(?i)landscape|portrait|square").all()  # it looked at the pixels

    after = _read(home, "image_descriptions").join(before.select("image_id", old="description"), on="image_id")
    changed = after.filter(pl.col("image_id").is_in(list(thin)))
    assert changed["source"].str.starts_with(f"vlm:{role_model('describer')}").all()
    for row in changed.iter_rows(named=True):  # the VLM's text first, then all the metadata said
        assert row["description"].endswith(row["old"]) and len(row["description"]) > len(row["old"])
    same = after.filter(~pl.col("image_id").is_in(list(thin)))
    assert (same["description"] == same["old"]).all() and set(same["source"]) == {"metadata"}
    assert _versions(home) != versions_before


def test_a_describer_turned_off_gives_back_the_metadata_descriptions_and_versions(home):
    with dg.instance_for_test() as instance:
        run_dataset(defs, "sample", instance, only=STEPS, log=lambda _: None)
        versions = _versions(home)
        with StandInServer(FaultPlan({})) as server:
            run_dataset(build_defs(llm=_describer(server.base_url)), "sample", instance,
                        op_config={"vlm_descriptions": {"rule": "always"}}, only=STEPS, log=lambda _: None)
            assert len(server.log) == _read(home, "image_descriptions").height  # always: every image
        assert _versions(home) != versions
        run_dataset(defs, "sample", instance, only=STEPS, log=lambda _: None)  # no describer again
    assert _versions(home) == versions and set(_read(home, "image_descriptions")["source"]) == {"metadata"}


def test_a_faulty_vlm_description_is_left_out_with_its_reason(home):
    """Planted faults in the VLM's replies: each leaves its image with the metadata description
    and a row saying why; the clean ones are used."""
    faults = FaultPlan({"truncated": 0.2, "repetition": 0.2, "refusal": 0.2, "too_short": 0.2}, seed=3)
    with StandInServer(faults) as server, dg.instance_for_test() as instance:
        run_dataset(build_defs(llm=_describer(server.base_url)), "sample", instance,
                    op_config={"vlm_descriptions": {"rule": "always"}}, only=STEPS, log=lambda _: None)
        logged = {e["reply"].strip(): e for e in server.log}
    vlm = _read(home, "vlm_descriptions")
    assert 0 < sum(1 for e in logged.values() if e["fault"]) < len(logged)
    for row in vlm.iter_rows(named=True):
        entry = logged[row["raw_text"].strip()]
        expected = {entry["fault"]} if entry["fault"] else {None}
        if entry["fault"] == "truncated" or entry.get("cut_at_max_tokens"):  # a looping reply also hits max_tokens
            expected = {"truncated", "ends_mid_sentence"}
        assert row["filter_reason"] in expected, (entry["fault"], row["filter_reason"])
    described = _read(home, "image_descriptions").join(vlm.select("image_id", "kept"), on="image_id")
    assert (described["source"].str.starts_with("vlm:") == described["kept"]).all()
