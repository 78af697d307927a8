"""Conceptual Captions loader (format `conceptual_captions`): the official CC3M TSV files.

The official download is two tab-separated files without a header, one image per line:

    Train_GCC-training.tsv                 <caption>\\t<image url>      (3,318,333 lines)
    Validation_GCC-1.1.0-Validation.tsv    <caption>\\t<image url>      (15,840 lines)

Google publishes urls, not images: the user downloads them. The image key is that download's file
name: the line's 0-based index zero-padded to 9 digits, `<index:09d>.jpg` (`000000000.jpg` for the
first line), which is how img2dataset names the images of a single-folder (`output_format files`)
download. So `images:` in dataset.yaml names the folder holding those files. img2dataset's tar
shards (webdataset output) are read by the `webdataset` loader instead (shards.py). The index counts records only: blank
lines are not records (as a CSV reader skips them), and a first line `caption\\turl` (the header
img2dataset needs, which users add to the official files) is a header, not a record.

Rows (see ..records), per record line at index n:
  * "image" `<source>#image/<n>`, image_key `<n:09d>.jpg`, no size (the file gives none);
  * "caption" `<source>#caption/<n>`, text = the caption with whitespace collapsed (the captions
    are already lower-cased and tokenised by Google's pipeline; they are kept as they are).
So rows == 2 x record lines, less one per line whose url is unusable (it has no image row).

Rejects (caption rows): invalid_record when the line is not UTF-8, has no tab or more than one (not
two fields), an empty caption, or a url that is not http(s) (then no image row either: nothing was
downloaded for it). A line's rows keep its index, so the images of later lines keep their names.
An empty file is one `<source>#file` row (malformed_file).

A UTF-8 file (the official ones are) is split and checked in polars, vectorised (the 3.3M-line train
file in seconds); a file with a non-UTF-8 line is read line by line, same rows (a test holds the two
paths to the same output).

Detection: a `.tsv` file whose first complete lines are mostly `<text>\\t<http(s) url>` (CC12M's
`<url>\\t<caption>` is the other way round and not claimed) is a signature (2).
"""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl

from ..records import CAPTION, IMAGE, SOURCE_RECORD_SCHEMA, to_source_records
from .common import BadFile, file_reject
from .registry import HEAD_BYTES, NO, SIGNATURE, Loader

FORMAT = "conceptual_captions"
_URL = re.compile(r"^https?://\S+$", re.IGNORECASE)
_LINE = re.compile(rb"^[^\t]*\S[^\t]*\thttps?://\S+\s*$", re.IGNORECASE)
_DETECT_LINES = 20
_DETAIL_MAX = 300


def image_key(index: int) -> str:
    """The image file of the record at 0-based `index`: img2dataset's single-folder name."""
    return f"{index:09d}.jpg"


def _is_header(line: bytes) -> bool:
    fields = line.strip().lower().split(b"\t")
    return len(fields) == 2 and fields[1] in (b"url", b"image_url") and b"://" not in fields[0]


def detect(path: Path, head: bytes) -> int:
    """2 when most of the first complete lines are `<caption>\\t<http(s) url>`, else 0."""
    if path.suffix != ".tsv":
        return NO
    text = head[3:] if head[:3] == b"\xef\xbb\xbf" else head
    lines = text.split(b"\n")
    if len(head) >= HEAD_BYTES:
        lines = lines[:-1]  # the last one may be cut
    lines = [ln for ln in lines if ln.strip()][:_DETECT_LINES]
    if lines and _is_header(lines[0]):
        lines = lines[1:]
    matches = sum(1 for ln in lines if _LINE.match(ln.rstrip(b"\r")))
    return SIGNATURE if matches and 2 * matches >= len(lines) else NO


def _problem(raw: bytes) -> tuple[str | None, str | None, str | None]:
    """(caption, url, why the line is unusable or None)."""
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return None, None, f"not UTF-8: {e}"
    fields = line.split("\t")
    if len(fields) != 2:
        return None, None, f"{len(fields)} tab-separated fields, not 2 (caption, url)"
    caption, url = " ".join(fields[0].split()) or None, fields[1].strip()
    if not _URL.match(url):
        return caption, None, f"url {url[:80]} is not an http(s) URL"
    if caption is None:
        return None, url, "caption is empty"
    return caption, url, None


def _rows_per_line(buf: bytes, source: str) -> dict[str, list]:
    """The columns of a file with lines that are not UTF-8: line by line (the slow path)."""
    cols: dict[str, list] = {c: [] for c in ("record_id", "kind", "image_key", "text", "reject_reason", "reject_detail")}
    index, first = 0, True
    for raw in buf.split(b"\n"):
        raw = raw.rstrip(b"\r")
        if not raw.strip():
            continue
        if first and _is_header(raw):
            first = False
            continue
        first = False
        caption, url, problem = _problem(raw)
        rows: list[tuple] = ([(f"{source}#image/{index}", IMAGE, image_key(index), None, None, None)]
                             if url is not None else [])
        rows.append((f"{source}#caption/{index}", CAPTION, image_key(index) if url is not None else None, caption,
                     "invalid_record" if problem else None, problem[:_DETAIL_MAX] if problem else None))
        for row in rows:
            for values, value in zip(cols.values(), row, strict=True):
                values.append(value)
        index += 1
    return cols


def _frame_per_file(text: str, source: str) -> pl.DataFrame:
    """The rows of a UTF-8 file, vectorised (3.3M lines in seconds); same rows as `_rows_per_line`."""
    lines = pl.Series("line", [text], dtype=pl.String).str.split("\n").explode().str.strip_suffix("\r")
    lines = lines.filter(lines.str.strip_chars() != "")
    if len(lines) and _is_header(lines[0].encode("utf-8")):
        lines = lines.slice(1)
    fields = lines.str.split("\t")
    df = pl.DataFrame({"n": pl.int_range(0, len(lines), eager=True, dtype=pl.Int64), "fields": fields}).with_columns(
        n_fields=pl.col("fields").list.len(),
        caption=pl.col("fields").list.get(0, null_on_oob=True).str.replace_all(r"\s+", " ").str.strip_chars(),
        url=pl.col("fields").list.get(1, null_on_oob=True).str.strip_chars(),
    ).with_columns(pl.when(pl.col("caption") != "").then(pl.col("caption")).alias("caption"))
    two = pl.col("n_fields") == 2
    url_ok = two & pl.col("url").str.contains(_URL.pattern.replace("^", "^(?i)", 1))
    problem = (
        pl.when(~two).then(pl.format("{} tab-separated fields, not 2 (caption, url)", pl.col("n_fields")))
        .when(~url_ok).then(pl.format("url {} is not an http(s) URL", pl.col("url").str.slice(0, 80)))
        .when(pl.col("caption").is_null()).then(pl.lit("caption is empty"))
    )
    key = pl.when(url_ok).then(pl.format("{}.jpg", pl.col("n").cast(pl.String).str.zfill(9)))
    df = df.select("n", url_ok.alias("url_ok"), key.alias("image_key"),
                   pl.when(two).then(pl.col("caption")).alias("text"), problem.alias("reject_detail"))
    images = df.filter(pl.col("url_ok")).select(
        pl.col("n"), pl.lit(0).alias("order"), pl.format("{}#image/{}", pl.lit(source), pl.col("n")).alias("record_id"),
        pl.lit(IMAGE).alias("kind"), "image_key", pl.lit(None, pl.String).alias("text"),
        pl.lit(None, pl.String).alias("reject_reason"), pl.lit(None, pl.String).alias("reject_detail"))
    captions = df.select(
        pl.col("n"), pl.lit(1).alias("order"), pl.format("{}#caption/{}", pl.lit(source), pl.col("n")).alias("record_id"),
        pl.lit(CAPTION).alias("kind"), "image_key", "text",
        pl.when(pl.col("reject_detail").is_not_null()).then(pl.lit("invalid_record")).alias("reject_reason"),
        "reject_detail")
    return pl.concat([images, captions]).sort("n", "order").drop("n", "order")


def load_conceptual_captions(path: Path, source: str) -> pl.DataFrame:
    """A CC3M TSV file -> source records (module docstring). Bad data never raises."""
    buf = Path(path).read_bytes()
    if buf[:3] == b"\xef\xbb\xbf":
        buf = buf[3:]
    if not buf.strip():
        return to_source_records([file_reject(source, FORMAT, BadFile("malformed_file", "the file is empty"))])
    try:
        known = _frame_per_file(buf.decode("utf-8"), source)
    except UnicodeDecodeError:
        cols = _rows_per_line(buf, source)
        known = pl.DataFrame(cols, schema={c: pl.String for c in cols})
    if not known.height:
        return to_source_records([])
    return known.select(
        pl.col(c) if c in known.columns
        else pl.lit(source if c == "source" else FORMAT if c == "source_format" else None, dtype=t).alias(c)
        for c, t in SOURCE_RECORD_SCHEMA.items()
    )


LOADER = Loader(FORMAT, load_conceptual_captions, detect, description="Conceptual Captions (CC3M) TSV: caption, url",
                suffixes=(".tsv",))
