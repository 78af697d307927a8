"""The common record schema every metadata loader produces.

A loader turns one metadata file into *source records*: one row per input record (an image entry,
a caption, a box, a QA pair, an OCR line). Rows a loader cannot use are still emitted, with a
`reject_reason`, so every input record ends in `grouped_metadata` or in `metadata_rejects`.
Boxes keep the units they came in (`bbox_norm` says whether x/y/w/h are 0-1 or pixels): pixel
boxes are normalised at grouping time, once the image size is known.
"""

from __future__ import annotations

import polars as pl

# Record kinds.
IMAGE, CAPTION, BOX, QA, OCR, INVALID = "image", "caption", "box", "qa", "ocr", "invalid"
KINDS = (IMAGE, CAPTION, BOX, QA, OCR, INVALID)

SOURCE_RECORD_SCHEMA: dict[str, pl.datatypes.DataTypeClass] = {
    "source": pl.String,  # source name: the metadata file's path relative to the dataset folder
    "source_format": pl.String,  # coco | llava | records
    "record_id": pl.String,  # unique within the dataset: "<source>#<kind>/<native id or index>"
    "kind": pl.String,
    "image_key": pl.String,  # image path relative to the dataset's image folder (posix), or null
    "width": pl.Int64,  # image entries only (from metadata; null when unknown)
    "height": pl.Int64,
    "text": pl.String,  # caption, OCR line, or the question of a QA pair
    "answer": pl.String,  # QA answer
    "label": pl.String,  # box label
    "bbox_x": pl.Float64,  # box: top-left x, y, width, height
    "bbox_y": pl.Float64,
    "bbox_w": pl.Float64,
    "bbox_h": pl.Float64,
    "bbox_norm": pl.Boolean,  # True: the four bbox values are already fractions of the image size
    "bbox_depth": pl.Float64,  # box: optional relative depth in [0, 1], 0 = nearest the camera (records format)
    # image entries only: the COCO id of a picture the dataset names otherwise (Visual Genome's
    # coco_id), so its records meet COCO's (coco_images.py); null for most formats
    "coco_id": pl.Int64,
    "reject_reason": pl.String,  # set by the loader when the record is unusable (kept, never dropped)
    "reject_detail": pl.String,
}

# Reasons a record can be rejected; the single list keeps reject tables queryable by reason.
REJECT_REASONS = {
    # loader level
    "malformed_file": "the metadata file is not valid JSON / JSONL / Parquet or not UTF-8",
    "unknown_format": "no loader recognises the file's structure",
    "ambiguous_format": "several loaders recognise the file: its format must be named in dataset.yaml",
    "missing_companion": "the file is read with another one (e.g. VQA questions with their annotations) that is absent",
    "invalid_record": "a record lacks required fields or has fields of the wrong type",
    "unknown_image_id": "an annotation names an image id absent from the file's image list",
    "unsafe_path": "the image path is absolute or leaves the dataset folder",
    "duplicate_record_id": "a record id appears twice in one source",
    # grouping / QC level
    "image_missing": "the image file does not exist",
    "image_unreadable": "the image file cannot be decoded (truncated, corrupt, not an image)",
    "image_too_small": "a side of the image is under the minimum size",
    "image_too_large": "the image exceeds the decompression-bomb pixel limit",
    "caption_too_short": "the caption has too few words or characters",
    "text_too_long": "a caption, question, answer or OCR line exceeds the maximum length",
    "duplicate_caption": "the same caption (after normalisation) already exists for this image",
    "near_duplicate_caption": "the caption has the same words as another caption of this image",
    "box_out_of_bounds": "the box has non-positive size or lies outside the image",
    "image_size_unknown": "the image size is unknown, so pixel boxes cannot be normalised",
    "no_usable_metadata": "no caption, box, QA or OCR of the image survived QC",
}


def empty_source_records() -> pl.DataFrame:
    return pl.DataFrame(schema=SOURCE_RECORD_SCHEMA)


def to_source_records(rows: list[dict]) -> pl.DataFrame:
    """Build a source-record frame from dicts holding any subset of the schema's columns."""
    if not rows:
        return empty_source_records()
    return pl.DataFrame(rows, schema=SOURCE_RECORD_SCHEMA, strict=False)
