"""Dagster resources: env defaults, one object per process, loud lineage metadata."""

from __future__ import annotations

import dagster as dg
import pytest

from visit_assets.defs.models import ClipResource, EmbedderResource, RewardResource
from visit_assets.lib.models.identity import RANDOM_INIT, UNCONFIGURED

ENV = ("VISIT_CLIP_ARCH", "VISIT_CLIP_PRETRAINED", "VISIT_CLIP_ALLOW_RANDOM_INIT", "VISIT_REWARD_MODEL",
       "VISIT_EMBEDDER_MODEL")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for var in ENV:
        monkeypatch.delenv(var, raising=False)


def test_defaults_are_offline_and_honest():
    clip = ClipResource()
    assert clip.settings()["arch"] == "ViT-B-32" and clip.settings()["pretrained"] is None
    meta = clip.lineage()
    assert meta["clip_weights"] == UNCONFIGURED and meta["clip_available"] is False
    assert meta["clip_weights_real"] is False and "NO MODEL CONFIGURED" in meta["clip_weights_status"]
    meta = RewardResource().lineage()
    assert meta["reward_weights"] == UNCONFIGURED and meta["reward_available"] is False
    assert RewardResource().get().score(["q"], ["a"]) is None
    meta = EmbedderResource().lineage()
    assert meta["embedder_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert meta["embedder_weights_real"] is True and len(meta["embedder_weights"]) == 64
    assert meta["embedder_weights_status"] == "ok"


@pytest.mark.slow  # builds the tiny reward checkpoint
def test_env_defaults_and_process_cache(monkeypatch, tiny_reward_dir, clip_arch):
    monkeypatch.setenv("VISIT_CLIP_ARCH", clip_arch)
    monkeypatch.setenv("VISIT_CLIP_ALLOW_RANDOM_INIT", "1")
    monkeypatch.setenv("VISIT_REWARD_MODEL", str(tiny_reward_dir))
    clip = ClipResource()
    assert clip.get() is ClipResource().get()  # built once per process and configuration
    assert clip.get() is not ClipResource(allow_random_init=False).get()
    meta = clip.lineage()
    assert meta["clip_model"] == f"open_clip:{clip_arch}/{RANDOM_INIT}"
    assert meta["clip_weights"] == RANDOM_INIT and meta["clip_weights_real"] is False
    assert "RANDOM-INIT" in meta["clip_weights_status"]
    monkeypatch.setenv("VISIT_CLIP_PRETRAINED", "/some/checkpoint.pt")
    assert ClipResource().settings()["pretrained"] == "/some/checkpoint.pt"
    assert ClipResource(pretrained="other.pt").settings()["pretrained"] == "other.pt"  # config beats env
    meta = RewardResource().lineage()
    assert meta["reward_available"] is True and meta["reward_weights_real"] is True
    assert meta["reward_weights_status"] == "ok"


@pytest.mark.slow
def test_lineage_lands_in_materialization_metadata(image_files, clip_arch):
    @dg.asset
    def clip_scored(clip: ClipResource) -> dg.MaterializeResult:
        emb, errors = clip.get().encode_images([image_files["red_circle.jpg"], image_files["missing.jpg"]])
        return dg.MaterializeResult(metadata={**clip.lineage(), "rows": len(emb),
                                              "errors": sum(e is not None for e in errors)})

    result = dg.materialize([clip_scored], resources={"clip": ClipResource(arch=clip_arch, allow_random_init=True)})
    assert result.success
    [mat] = result.asset_materializations_for_node("clip_scored")
    meta = {k: v.value for k, v in mat.metadata.items()}
    assert meta["clip_weights"] == RANDOM_INIT and meta["clip_weights_real"] is False
    assert meta["rows"] == 2 and meta["errors"] == 1
