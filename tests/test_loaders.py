"""Loaders on the real sample files and on hand-made edge cases."""

from __future__ import annotations

import json

import polars as pl

from visit_assets.lib.metadata.dataset import load_dataset, read_layout
from visit_assets.lib.metadata.loaders import detect_format, load_source
from visit_assets.lib.metadata.loaders.llava import load_llava
from visit_assets.lib.metadata.loaders.records_format import load_records


def test_formats_detected_on_sample(sample_dir):
    layout = read_layout(sample_dir)
    formats = {layout.source_name(p): detect_format(p) for p, _ in layout.sources}
    assert formats == {
        "annotations/captions.json": "coco",
        "annotations/instances.json": "coco",
        "llava_conversations.json": "llava",
        "qa_pairs.jsonl": "records",
    }


def test_layout_lists_metadata_in_path_order_and_never_inside_images(tmp_path):
    root = tmp_path / "nested"
    for rel in ("b.jsonl", "a/z.json", "a/b/c.json", "images/x.json", "pics/y.json", "conversations/c.json",
                "notes.txt"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("[]")
    assert _names(read_layout(root)) == ["a/b/c.json", "a/z.json", "b.jsonl", "pics/y.json"]
    (root / "dataset.yaml").write_text("images: pics\n")  # a named images folder is skipped instead
    assert _names(read_layout(root)) == ["a/b/c.json", "a/z.json", "b.jsonl", "images/x.json"]
    (root / "dataset.yaml").write_text("images: .\n")  # images in the folder itself: no metadata files there
    assert _names(read_layout(root)) == []


def _names(layout) -> list[str]:
    return [layout.source_name(p) for p, _ in layout.sources]


def test_llava_sample_gives_image_and_qa_records(sample_dir):
    src = json.loads((sample_dir / "llava_conversations.json").read_text())
    frame = load_llava(sample_dir / "llava_conversations.json", "llava_conversations.json")
    n_pairs = sum(len(e["conversations"]) // 2 for e in src)
    assert frame.filter(pl.col("kind") == "image").height == len(src)
    qa = frame.filter(pl.col("kind") == "qa")
    assert qa.height == n_pairs
    assert qa["reject_reason"].null_count() == qa.height
    assert not qa["text"].str.contains("<image>").any()


def test_records_format_expands_every_element(sample_dir):
    lines = [json.loads(x) for x in (sample_dir / "qa_pairs.jsonl").read_text().splitlines() if x.strip()]
    frame = load_records(sample_dir / "qa_pairs.jsonl", "qa_pairs.jsonl")
    expected = sum(1 + sum(len(o.get(k) or []) for k in ("captions", "ocr", "qa", "boxes")) for o in lines)
    assert frame.height == expected
    assert frame["record_id"].n_unique() == frame.height


def test_records_format_rejects_bad_lines_keeps_good(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_bytes(
        b'{"id": "a", "image": "x.jpg", "captions": ["a red bus on a street"], "qa": [{"question": "q?"}]}\n'
        b'{"id": "b", "image": "../../etc/passwd", "captions": ["a caption that is long"]}\n'
        b'\xff\xfe not json\n'
        b'{"id": "a", "image": "y.jpg", "boxes": [{"label": "bus", "bbox": [0, 0, 0.5, 0.5], "normalized": true}]}\n'
    )
    frame = load_records(path, "r.jsonl")
    reasons = dict(zip(frame["record_id"], frame["reject_reason"], strict=True))
    assert reasons["r.jsonl#caption/a/0"] is None
    assert reasons["r.jsonl#qa/a/0"] == "invalid_record"
    assert reasons["r.jsonl#image/b"] == "unsafe_path" and reasons["r.jsonl#caption/b/0"] == "unsafe_path"
    assert reasons["r.jsonl#line/3"] == "malformed_file"
    assert reasons["r.jsonl#image/a@4"] == "duplicate_record_id"
    assert frame["record_id"].n_unique() == frame.height


def test_unknown_and_empty_files_are_reject_rows(tmp_path):
    (tmp_path / "empty.json").write_bytes(b"")
    (tmp_path / "other.json").write_text('{"hello": "world"}')
    empty = load_source(tmp_path / "empty.json", "empty.json")
    other = load_source(tmp_path / "other.json", "other.json")
    assert empty.row(0, named=True)["reject_reason"] == "malformed_file"
    assert other.row(0, named=True)["reject_reason"] == "unknown_format"


def test_sources_merge_into_one_record_per_image(sample_dir):
    records = load_dataset(read_layout(sample_dir), n_shards=4)
    per_image = records.filter(pl.col("image_key").is_not_null()).group_by("image_key").agg(
        pl.col("source").n_unique().alias("n_sources"), pl.col("image_id").n_unique().alias("ids"),
        pl.col("shard").n_unique().alias("shards"))
    assert per_image["ids"].max() == 1 and per_image["shards"].max() == 1
    assert per_image.filter(pl.col("image_key") == "astronaut.jpg")["n_sources"].item() >= 3
