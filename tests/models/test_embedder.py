"""SentenceEmbedder on the packaged all-MiniLM-L6-v2, plus the shared weight-hash / offline helpers."""

from __future__ import annotations

import os

import numpy as np
import pytest

from visit_assets.lib.ids import file_sha256
from visit_assets.lib.models.embedder import DEFAULT_EMBEDDER_NAME, SentenceEmbedder, packaged_minilm_path
from visit_assets.lib.models.weights import hub_offline, weight_files, weights_sha256

SENTENCES = [
    "A man is riding a bicycle down the street.",
    "A man rides a bike along the road.",
    "The stock market closed lower on Friday.",
    "Two dogs are playing with a ball in the park.",
    "A pair of puppies chase a ball on the grass.",
    "Photosynthesis converts light into chemical energy.",
]


def test_construction_is_cheap_and_identity_needs_no_model():
    e = SentenceEmbedder()
    ident = e.identity
    assert e._model is None  # hashing the files did not load the model
    assert ident.kind == "embedder"
    assert ident.name == DEFAULT_EMBEDDER_NAME
    assert ident.is_real
    [weights] = weight_files(packaged_minilm_path())
    assert weights.name == "model.safetensors"
    assert ident.weights == file_sha256(weights)
    assert SentenceEmbedder().identity == ident  # stable across instances


@pytest.mark.slow
def test_paraphrases_are_closer_than_unrelated(embedder):
    v = embedder.encode(SENTENCES)
    assert v.shape == (len(SENTENCES), embedder.dim) == (6, 384)
    assert v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    sim = v @ v.T
    # each paraphrase pair is clearly closer than any unrelated pair (0.76 / 0.57 vs <= 0.12 here)
    for a, b in ((0, 1), (3, 4)):
        unrelated = [sim[a, k] for k in range(len(SENTENCES)) if k not in (a, b)]
        assert sim[a, b] > max(unrelated) + 0.3, (a, b, sim[a, b], max(unrelated))


@pytest.mark.slow
def test_batching_matches_one_by_one(embedder):
    small = SentenceEmbedder(batch_size=2)
    small._model = embedder.model  # same weights, different batching
    together = small.encode(SENTENCES)
    singles = np.stack([embedder.encode([s])[0] for s in SENTENCES])
    np.testing.assert_allclose(together, singles, atol=1e-5)


@pytest.mark.slow
def test_empty_input(embedder):
    assert embedder.encode([]).shape == (0, 384)


def test_weights_sha256_of_a_sharded_folder(tmp_path):
    (tmp_path / "model-00001-of-00002.safetensors").write_bytes(b"one")
    (tmp_path / "model-00002-of-00002.safetensors").write_bytes(b"two")
    (tmp_path / "pytorch_model.bin").write_bytes(b"legacy copy, not loaded when safetensors exist")
    (tmp_path / "onnx").mkdir()
    (tmp_path / "onnx" / "model.bin").write_bytes(b"other backend")
    (tmp_path / "2_Dense").mkdir()
    (tmp_path / "2_Dense" / "pytorch_model.bin").write_bytes(b"dense head")
    names = [p.relative_to(tmp_path).as_posix() for p in weight_files(tmp_path)]
    assert names == ["2_Dense/pytorch_model.bin", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    h = weights_sha256(tmp_path)
    assert len(h) == 64 and h == weights_sha256(tmp_path)
    (tmp_path / "2_Dense" / "pytorch_model.bin").write_bytes(b"dense head, retrained")
    assert weights_sha256(tmp_path) != h
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError):
        weights_sha256(empty)


def test_hub_offline_is_scoped(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    before = constants.HF_HUB_OFFLINE
    with hub_offline():
        assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["TRANSFORMERS_OFFLINE"] == "1"
        assert constants.is_offline_mode()
    assert "HF_HUB_OFFLINE" not in os.environ and "TRANSFORMERS_OFFLINE" not in os.environ
    assert constants.HF_HUB_OFFLINE == before
