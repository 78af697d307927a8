"""Group source records into one record per image, with quality control.

Every input row leaves here exactly once: either inside a grouped image (its id listed in
`source_record_ids`) or as a reject row with a reason. All checks are vectorised polars
expressions, so a COCO-scale dataset groups in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from .images import PIL_DEFAULT_MAX_PIXELS
from .records import BOX, CAPTION, IMAGE, OCR, QA

# Articles carry no content: "A dog on the grass." and "the grass, a dog on" are near-duplicates.
_STOPWORDS = ["a", "an", "the"]


@dataclass(frozen=True)
class QCConfig:
    min_side: int = 100  # MM-Instruct drops images under 100 px on a side
    min_caption_words: int = 3
    min_caption_chars: int = 10
    max_text_chars: int = 4000
    box_tolerance: float = 0.01  # fraction of a side a box may overhang before it is rejected
    max_pixels: int = PIL_DEFAULT_MAX_PIXELS


REJECT_COLUMNS = ["source", "record_id", "kind", "image_key", "image_id", "shard", "reason", "detail"]


def _lit(value: pl.Expr | str) -> pl.Expr:
    return pl.lit(value) if isinstance(value, str) else value


def _reject(cond: pl.Expr, reason: pl.Expr | str, detail: pl.Expr | str) -> tuple[pl.Expr, pl.Expr]:
    """(reason, detail) expressions that set a reject only where none is set yet."""
    fresh = pl.col("reason").is_null() & cond
    detail_expr = _lit(detail)
    return (
        pl.when(fresh).then(_lit(reason)).otherwise(pl.col("reason")).alias("reason"),
        pl.when(fresh).then(detail_expr).otherwise(pl.col("detail")).alias("detail"),
    )


def _apply(frame: pl.DataFrame, cond: pl.Expr, reason: pl.Expr | str, detail: pl.Expr | str) -> pl.DataFrame:
    return frame.with_columns(*_reject(cond, reason, detail))


def image_table(records: pl.DataFrame, probes: pl.DataFrame | None, qc: QCConfig) -> pl.DataFrame:
    """One row per image key: metadata size, file size (when probed) and an image-level reason."""
    sized = (pl.col("kind") == IMAGE) & pl.col("width").is_not_null() & pl.col("height").is_not_null()
    # A picture merged from several names (coco_images.py) takes the size given for the file its key
    # names: Visual Genome's copy of a COCO picture may be stored at another size than COCO's.
    own = pl.col("source_image_key") == pl.col("image_key") if "source_image_key" in records.columns else True
    meta = (
        records.filter(pl.col("image_key").is_not_null())
        .group_by("image_key")
        .agg(
            *(pl.coalesce(pl.col(c).filter(sized & own).first(), pl.col(c).filter(sized).first()).alias(f"meta_{c}")
              for c in ("width", "height")),
        )
    )
    if probes is None:
        table = meta.with_columns(
            pl.col("meta_width").alias("width"), pl.col("meta_height").alias("height"),
            pl.lit(None, pl.String).alias("image_mode"), pl.lit(False).alias("image_checked"),
            pl.lit(None, pl.String).alias("reason"), pl.lit(None, pl.String).alias("detail"),
        )
    else:
        table = meta.join(probes, on="image_key", how="left").with_columns(
            pl.coalesce("file_width", "meta_width").alias("width"),
            pl.coalesce("file_height", "meta_height").alias("height"),
            pl.lit(True).alias("image_checked"),
            pl.col("image_reason").alias("reason"),
            pl.col("image_detail").alias("detail"),
        )
    small = pl.min_horizontal("width", "height") < qc.min_side
    return _apply(
        table, small, "image_too_small",
        pl.format("{}x{} is under {} px", "width", "height", pl.lit(qc.min_side)),
    ).select("image_key", "meta_width", "meta_height", "width", "height", "image_mode",
             "image_checked", pl.col("reason").alias("image_reason"), pl.col("detail").alias("image_detail"))


def _text_checks(frame: pl.DataFrame, qc: QCConfig) -> pl.DataFrame:
    text = pl.col("text")
    is_caption = pl.col("kind") == CAPTION
    too_long = (text.str.len_chars() > qc.max_text_chars) | (pl.col("answer").str.len_chars() > qc.max_text_chars)
    frame = _apply(frame, too_long, "text_too_long", pl.format("over {} characters", pl.lit(qc.max_text_chars)))
    short = is_caption & (
        (text.str.count_matches(r"\S+") < qc.min_caption_words) | (text.str.len_chars() < qc.min_caption_chars)
    )
    frame = _apply(frame, short, "caption_too_short", pl.format("too short: {}", text))
    # Duplicates are judged only among captions still alive, in record order (first one wins).
    alive = is_caption & pl.col("reason").is_null()
    exact = text.str.to_lowercase().str.replace_all(r"\s+", " ").str.strip_chars(" .,!?;:'\"")
    bag = (
        text.str.to_lowercase().str.extract_all(r"[a-z0-9]+")
        .list.eval(pl.element().filter(~pl.element().is_in(_STOPWORDS)))
        .list.unique().list.sort().list.join(" ")
    )
    frame = frame.with_columns(
        pl.when(alive).then(exact).alias("_exact"), pl.when(alive).then(bag).alias("_bag")
    )
    first_exact = pl.struct("image_key", "_exact").is_first_distinct()
    frame = _apply(frame, alive & ~first_exact, "duplicate_caption", "same caption already kept for this image")
    alive = is_caption & pl.col("reason").is_null()
    first_bag = pl.struct("image_key", "_bag").is_first_distinct()
    frame = frame.with_columns(pl.when(alive).then(pl.col("_bag")).alias("_bag"))
    frame = _apply(frame, alive & ~first_bag, "near_duplicate_caption", "same words as a caption already kept")
    return frame.drop("_exact", "_bag")


def annotation_frames(records: pl.DataFrame) -> pl.DataFrame:
    """The image size each format's pixel boxes are in, per image key: the size its own image rows
    give. One picture's copies may differ in size across datasets (Visual Genome's and COCO's), and a
    box is in the pixels of the copy its dataset annotated."""
    sized = (pl.col("kind") == IMAGE) & pl.col("width").is_not_null() & pl.col("height").is_not_null()
    return (
        records.filter(sized & pl.col("image_key").is_not_null())
        .group_by("image_key", "source_format")
        .agg(pl.col("width").first().alias("frame_width"), pl.col("height").first().alias("frame_height"))
    )


def _box_checks(frame: pl.DataFrame, qc: QCConfig) -> pl.DataFrame:
    """Normalise pixel boxes by the annotation frame (its format's metadata size, else the image's
    metadata size, else the file size), then bound-check."""
    is_box = pl.col("kind") == BOX
    frame_w = pl.coalesce("frame_width", "meta_width", "width").cast(pl.Float64)
    frame_h = pl.coalesce("frame_height", "meta_height", "height").cast(pl.Float64)
    px = is_box & ~pl.col("bbox_norm").fill_null(False)
    frame = _apply(frame, px & (frame_w.is_null() | frame_h.is_null()), "image_size_unknown",
                   "pixel box but no image size")
    sx = pl.when(px).then(frame_w).otherwise(1.0)
    sy = pl.when(px).then(frame_h).otherwise(1.0)
    frame = frame.with_columns(
        (pl.col("bbox_x") / sx).alias("x1"), (pl.col("bbox_y") / sy).alias("y1"),
        ((pl.col("bbox_x") + pl.col("bbox_w")) / sx).alias("x2"),
        ((pl.col("bbox_y") + pl.col("bbox_h")) / sy).alias("y2"),
    )
    lo, hi = -qc.box_tolerance, 1 + qc.box_tolerance
    bad = is_box & (
        (pl.col("bbox_w") <= 0) | (pl.col("bbox_h") <= 0)
        | (pl.col("x1") < lo) | (pl.col("y1") < lo) | (pl.col("x2") > hi) | (pl.col("y2") > hi)
        | pl.any_horizontal(pl.col("x1", "y1", "x2", "y2").is_nan())
    )
    detail = pl.format("box [{}, {}, {}, {}] (fractions of the image)",
                       *(pl.col(c).round(3) for c in ("x1", "y1", "x2", "y2")))
    frame = _apply(frame, bad, "box_out_of_bounds", detail)
    return frame.with_columns(pl.col(c).clip(0.0, 1.0) for c in ("x1", "y1", "x2", "y2"))


def group_records(
    records: pl.DataFrame, probes: pl.DataFrame | None, qc: QCConfig = QCConfig()
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Return (grouped images, rejects). `probes` is None when image files are not checked."""
    images = image_table(records, probes, qc)
    frame = (
        # width / height are the image's (file, else metadata) from here on, not one row's own
        records.drop("width", "height").rename({"reject_reason": "reason", "reject_detail": "detail"})
        .join(images, on="image_key", how="left")
        .join(annotation_frames(records), on=["image_key", "source_format"], how="left")
        .sort("record_order")
    )
    frame = _apply(frame, pl.col("image_reason").is_not_null(), pl.col("image_reason"), pl.col("image_detail"))
    frame = _box_checks(_text_checks(frame, qc), qc)
    content = pl.col("kind").is_in([CAPTION, BOX, QA, OCR]) & pl.col("reason").is_null()
    has_content = content.any().over("image_key")
    frame = _apply(frame, pl.col("image_key").is_not_null() & ~has_content, "no_usable_metadata",
                   "no caption, box, QA or OCR survived QC")
    rejects = frame.filter(pl.col("reason").is_not_null()).select(REJECT_COLUMNS)
    return _aggregate(frame.filter(pl.col("reason").is_null())), rejects


def _aggregate(accepted: pl.DataFrame) -> pl.DataFrame:
    kind = pl.col("kind")
    # Source records stored before the depth column existed group with every depth null.
    depth = pl.col("bbox_depth") if "bbox_depth" in accepted.columns else pl.lit(None, pl.Float64)
    return (
        accepted.group_by("image_key", maintain_order=True)
        .agg(
            pl.col("image_id").first(),
            pl.col("shard").first(),
            pl.col("width").first(),
            pl.col("height").first(),
            pl.col("image_mode").first(),
            pl.col("image_checked").first(),
            pl.col("text").filter(kind == CAPTION).alias("captions"),
            pl.struct("label", "x1", "y1", "x2", "y2", depth.alias("depth")).filter(kind == BOX).alias("boxes"),
            pl.struct(pl.col("text").alias("question"), "answer").filter(kind == QA).alias("qa"),
            pl.col("text").filter(kind == OCR).alias("ocr"),
            pl.col("source").unique().sort().alias("sources"),
            pl.col("record_id").alias("source_record_ids"),
        )
        .with_columns(pl.col("source_record_ids").list.len().alias("n_source_records"))
        .sort("image_id")
    )


def source_counts(records: pl.DataFrame, rejects: pl.DataFrame) -> dict[str, dict]:
    """What each source brought to a grouping, for a mixed dataset folder: {source: {"format",
    "images": grouped images it is part of, "kept": {kind: n}, "rejected": {kind: n}}}."""
    rejected = pl.col("record_id").is_in(rejects["record_id"].implode())
    frame = records.select("source", "source_format", "kind", "image_key", rejected.alias("rejected"))
    out: dict[str, dict] = {}
    for (source, fmt), part in frame.sort("source").group_by("source", "source_format", maintain_order=True):
        kept = part.filter(~pl.col("rejected"))
        out[str(source)] = {
            "format": fmt,
            "images": kept["image_key"].drop_nulls().n_unique(),
            **{status: {str(k): int(n) for k, n in rows.group_by("kind").len().sort("kind").iter_rows()}
               for status, rows in (("kept", kept), ("rejected", part.filter(pl.col("rejected"))))},
        }
    return out


def images_by_source_count(grouped: pl.DataFrame) -> dict[str, int]:
    """{number of sources: grouped images made from that many}: how far the datasets overlap."""
    if grouped.is_empty():
        return {}
    counts = grouped.group_by(pl.col("sources").list.len().alias("n")).len().sort("n")
    return {str(n): int(c) for n, c in counts.iter_rows()}
