"""quality_scores works a slice of rows at a time (memory stays flat at COCO size): its CLIP score
equals each row's score computed on its own (its image's vector, its answer's vector), and its judge
asks, parses and reports every row once, whatever the slice size."""

from types import SimpleNamespace

import numpy as np
import polars as pl
import pytest

from visit_assets.defs.selection import scoring
from visit_assets.lib.storage import Parent, ParquetStore

DIM = 6


def _vector(text: str) -> np.ndarray:
    v = np.random.default_rng(sum(map(ord, text))).normal(size=DIM).astype(np.float32)
    return v / np.linalg.norm(v)


class WordVectors:  # a deterministic text encoder: the test is about rows, slices and joins, not a model
    identity = SimpleNamespace(label=lambda: "word-vectors@test")

    def __init__(self):
        self.calls: list[int] = []

    def encode(self, texts):
        self.calls.append(len(texts))
        return np.stack([_vector(t) for t in texts]) if texts else np.zeros((0, DIM), np.float32)


def _embeddings(tmp_path) -> Parent:
    store = ParquetStore(tmp_path)
    images = ["a", "b", "c", "b"]  # "b" twice: the last one counts; "z" (below) has no embedding
    vectors = [_vector(f"image {i}{n}").tolist() for n, i in enumerate(images)]
    store.write("image_embeddings", "d", "v1", pl.DataFrame({
        "image_id": images, "embedding": pl.Series(vectors, dtype=pl.Array(pl.Float32, DIM)),
        "embedding_space": ["text-description"] * 4}), 0)
    return Parent(store, "image_embeddings", "d", (0,))


@pytest.mark.parametrize("chunk", [1, 3, 8192])
def test_clip_scores_by_slices_equal_each_row_on_its_own(tmp_path, monkeypatch, chunk):
    monkeypatch.setattr(scoring, "CLIP_CHUNK", chunk)
    embeddings, encoder = _embeddings(tmp_path), WordVectors()
    frame = pl.DataFrame({"image_id": ["c", "z", "b", "a", "b", "a", "c"],
                          "answer": [f"answer {n}" for n in range(7)]})
    embedder = SimpleNamespace(get=lambda: encoder)
    scores, space, model = scoring._clip(None, frame, embeddings, None, embedder, max_sentences=10)
    image = {"a": _vector("image a0"), "b": _vector("image b3"), "c": _vector("image c2")}
    expected = [100 * float(np.dot(image[i], _vector(a))) if i in image else np.nan
                for i, a in frame.select("image_id", "answer").iter_rows()]
    np.testing.assert_allclose(scores, expected, rtol=1e-5)
    assert np.isnan(scores[1]) and space == "text-description" and "description-answer similarity" in model
    assert max(encoder.calls) <= chunk and sum(encoder.calls) == frame.height


class CountingJudge:  # run_batch as the LLM resource has it: the score is the answer's length
    def __init__(self):
        self.batches: list[int] = []

    def run_batch(self, context, requests, label="llm"):
        self.batches.append(len(requests))
        answer = lambda r: r.messages[-1]["content"].split("Answer:\n", 1)[1].split("\n\n")[0]  # noqa: E731
        results = [SimpleNamespace(text=f"Score: {len(answer(r))}", status="ok", cache_key=f"k{r.tag}") for r in requests]
        return results, {"llm_requests": len(requests), "llm_sent": len(requests), "llm_tokens_out": len(requests)}


@pytest.mark.parametrize("chunk", [1, 2, 20_000])
def test_judge_by_slices_asks_each_row_once_and_keeps_imported_scores(monkeypatch, chunk):
    monkeypatch.setattr(scoring, "JUDGE_CHUNK", chunk)
    frame = pl.DataFrame({"instruction": [f"question {n}" for n in range(5)],
                          "answer": ["a" * n for n in (10, 20, 30, 40, 50)],
                          "imported_judge": [None, 70.0, None, None, 90.0]})
    judge = CountingJudge()
    config = SimpleNamespace(judge=True, judge_max_tokens=32)
    context = SimpleNamespace(log=SimpleNamespace(info=lambda *_: None))
    values, columns, meta, status = scoring._judge(context, frame, config, judge)
    by_name = {c.name: c for c in columns if isinstance(c, pl.Series)}
    assert values[[0, 2, 3]].tolist() == [10.0, 30.0, 40.0] and np.isnan(values[[1, 4]]).all()
    assert by_name["judge_status"].to_list() == ["ok", "imported", "ok", "ok", "imported"]
    assert by_name["judge_cache_key"].to_list() == ["k0", None, "k2", "k3", None]
    assert status == {"ok": 3, "imported": 2} and meta["llm_sent"] == 3
    assert judge.batches == [len(range(3)[i:i + chunk]) for i in range(0, 3, chunk)]  # 3 rows to judge
