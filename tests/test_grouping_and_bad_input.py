"""Grouping + QC on the sample's deliberate cases and on the bad-input corpus: nothing is lost."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import polars as pl
import pytest

from visit_assets.lib.metadata.dataset import DatasetError, load_dataset, read_layout
from visit_assets.lib.metadata.grouping import QCConfig, group_records
from visit_assets.lib.metadata.images import probe_images

# case -> reasons that must appear among its rejects ("accepted" cases: no image-level reject).
EXPECTED = {
    "malformed_json": {"malformed_file"},
    "truncated_json": {"malformed_file"},
    "truncated_jsonl": {"malformed_file"},
    "wrong_coco_schema": {"unknown_format"},
    "missing_fields": {"invalid_record"},
    "unknown_image_id": {"unknown_image_id"},
    "boxes_out_of_range": {"box_out_of_bounds"},
    "negative_sizes": {"invalid_record", "box_out_of_bounds"},
    "huge_image": {"image_too_large"},
    "truncated_jpeg": {"image_unreadable"},
    "zero_byte_file": {"malformed_file", "image_unreadable"},
    "path_traversal": {"unsafe_path"},
    "symlink_escape": {"unsafe_path"},
    "non_utf8": {"malformed_file"},
    "duplicate_ids": {"duplicate_record_id"},
    "image_missing": {"image_missing"},
    "not_an_image": {"image_unreadable"},
    "image_size_unknown": {"image_missing"},
    "unknown_format": {"unknown_format"},
    "small_image": {"image_too_small"},
    "caption_qc": {"caption_too_short", "duplicate_caption", "near_duplicate_caption"},
    "cmyk_jpeg": set(),
    "sixteen_bit_png": set(),
    "palette_png": set(),
}
IMAGE_REASONS = {"image_missing", "image_unreadable", "image_too_small", "image_too_large", "unsafe_path"}


def ingest(folder: Path) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    layout = read_layout(folder)
    records = load_dataset(layout, n_shards=1)
    keys = records["image_key"].drop_nulls().unique().to_list()
    grouped, rejects = group_records(records, probe_images(layout.images_dir, keys), QCConfig())
    return records, grouped, rejects


def assert_accounted(records, grouped, rejects):
    """Every input record is in exactly one place."""
    placed = grouped["source_record_ids"].explode().drop_nulls().to_list() + rejects["record_id"].to_list()
    assert sorted(placed) == sorted(records["record_id"].to_list())


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_bad_case_gives_reject_rows_and_loses_nothing(bad_dir, case):
    records, grouped, rejects = ingest(bad_dir / case)
    assert_accounted(records, grouped, rejects)
    reasons = set(rejects["reason"])
    assert EXPECTED[case] <= reasons, (case, reasons)
    if not EXPECTED[case]:
        assert not reasons & IMAGE_REASONS and grouped.height >= 1


def test_huge_caption_is_rejected_not_hung(bad_dir, tmp_path):
    spec = importlib.util.spec_from_file_location("gen", bad_dir / "huge_caption" / "generate.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    folder = gen.generate(tmp_path / "huge_caption")
    records, grouped, rejects = ingest(folder)
    assert_accounted(records, grouped, rejects)
    assert "text_too_long" in set(rejects["reason"])
    assert grouped["captions"].explode().str.len_chars().max() < 4000


def test_bad_manifest_is_a_clear_error(bad_dir):
    with pytest.raises(DatasetError, match="dataset.yaml"):
        read_layout(bad_dir / "bad_dataset_yaml")


def test_sample_qc_cases_and_accounting(sample_dir):
    records, grouped, rejects = ingest(sample_dir)
    assert_accounted(records, grouped, rejects)
    reasons = set(rejects["reason"])
    assert {"image_too_small", "caption_too_short", "duplicate_caption",
            "near_duplicate_caption", "box_out_of_bounds"} <= reasons
    assert grouped.height >= 12 and grouped["image_id"].n_unique() == grouped.height
    boxes = grouped["boxes"].explode().drop_nulls().struct.unnest()
    assert boxes.select(pl.all().exclude("label", "depth").is_between(0, 1).all()).row(0) == (True,) * 4
    assert grouped["image_checked"].all()
    astronaut = grouped.filter(pl.col("image_key") == "astronaut.jpg").row(0, named=True)
    assert len(astronaut["sources"]) >= 3 and astronaut["qa"] and astronaut["ocr"]


def test_unchecked_images_use_metadata_sizes(sample_dir):
    records = load_dataset(read_layout(sample_dir), n_shards=1)
    grouped, _ = group_records(records, None, QCConfig())
    assert not grouped["image_checked"].any()
    assert grouped["width"].null_count() == 0
