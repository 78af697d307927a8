"""Web-scale shards, read in place: WebDataset tars (`webdataset`) and Parquet with image bytes
(`parquet_images`), as img2dataset writes them for CC3M, CC12M, LAION, DataComp.

The shard files sit in the image folder; their image keys are `<shard path>/<member>`
(..image_store: the key syntax, and how an image is opened from its shard without extracting).
Both loaders emit the member part only, and load_dataset prefixes the shard's path under the
image folder (`Loader.shard`), so a shard can be moved without its loader knowing.

`webdataset`: a tar whose members are grouped into samples by key (the member name up to the first
dot of its file name: `000000123.jpg`, `.txt`, `.json` are one sample, WebDataset's convention).
Field names are img2dataset's (its webdataset writer: `<key>.jpg`, `<key>.txt` the caption,
`<key>.json` with `caption`, `url`, `key`, `status`, `error_message`, `width`, `height`,
`original_width`, ...). Rows per sample, in member order:
  * "image" `<source>#image/<key>`, image_key the image member, width / height from the json;
  * "caption" `<source>#caption/<key>/txt`: the `.txt`; `<source>#caption/<key>/json`: the json's
    `caption` when there is no `.txt` or it differs (img2dataset writes the same caption twice).
A sample whose json `status` is not "success", or which has no image member, keeps its rows as
rejects `image_missing` (the status and error_message in the detail), image_key null: nothing is
lost. img2dataset writes only downloaded samples to the tar; every sample, failed ones included,
goes to the metadata-only `<shard>.parquet` beside it (its `key`, `status`, `error_message`,
`caption`, ...). That file is the tar's companion: each of its samples absent from the tar is an
`image_missing` reject the same way, so a failed download is accounted for. A json that is not an
object is an `invalid_record` row `<source>#json/<key>`. Members of other types (`.cls`, `.npy`)
are not records. A tar that cannot be read is one `<source>#file` row.

`parquet_images`: one row per image; the image column as image_store says (`jpg` / `png` / `webp` /
`image`), the row key its `key` column else its row index; caption the first non-empty of `txt`
(img2dataset's), `caption`, `text` (Hugging Face's); `width` / `height` columns when present;
`status` / `error_message` as above. A row without image bytes is rejected `image_missing`.

Detection (signature, 2): a `.tar` whose first members (in the first 64 KB) include a `.json` or
`.txt`; a `.parquet` whose schema has an image-bytes column (binary, or a struct with `bytes`).
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path, PurePosixPath

import polars as pl

from ..image_store import PARQUET_KEY_COLUMN, parquet_image_column, parquet_row_key
from ..records import CAPTION, IMAGE, INVALID, to_source_records
from .common import BadFile, as_size, file_reject, nonempty_str
from .registry import NO, SIGNATURE, Loader

WEBDATASET, PARQUET_IMAGES = "webdataset", "parquet_images"
IMAGE_SUFFIXES = ("jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff")
TEXT_SUFFIXES = ("txt", "json")
CAPTION_COLUMNS = ("txt", "caption", "text")
SUCCESS = "success"  # img2dataset's status of a downloaded sample


def sample_key(member: str) -> tuple[str, str]:
    """(sample key, suffix) of a member name: `a/000123.jpg` -> (`a/000123`, `jpg`)."""
    p = PurePosixPath(member)
    stem, _, suffix = p.name.partition(".")
    return str(p.parent / stem) if str(p.parent) != "." else stem, suffix.lower()


def _status_problem(meta: dict) -> str | None:
    status = meta.get("status")
    if status is None or status == SUCCESS:
        return None
    error = meta.get("error_message")
    return f"img2dataset status {status}" + (f": {error}" if error else "")


def sample_rows(source: str, fmt: str, key: str, image: str | None, txt: str | None, meta: dict) -> list[dict]:
    """The rows of one sample (module docstring), shared by both loaders."""
    problem = _status_problem(meta) or (None if image else "the sample has no image")
    base = {"source": source, "source_format": fmt, "image_key": None if problem else image}
    if problem:
        base.update(reject_reason="image_missing", reject_detail=problem[:300])
    rows = [{**base, "kind": IMAGE, "record_id": f"{source}#image/{key}",
             "width": as_size(meta.get("width")), "height": as_size(meta.get("height"))}]
    txt = " ".join(txt.split()) if nonempty_str(txt) else None
    caption = " ".join(meta["caption"].split()) if nonempty_str(meta.get("caption")) else None
    if txt:
        rows.append({**base, "kind": CAPTION, "record_id": f"{source}#caption/{key}/txt", "text": txt})
    if caption and caption != txt:
        rows.append({**base, "kind": CAPTION, "record_id": f"{source}#caption/{key}/json", "text": caption})
    return rows


# -- webdataset --------------------------------------------------------------------------------


def _samples(tar: tarfile.TarFile) -> dict[str, dict[str, object]]:
    """{sample key: {"image": member, "txt": text, "json": parsed}} in member order; only the text
    members are read (into memory), never the images."""
    samples: dict[str, dict[str, object]] = {}
    for info in tar:
        if not info.isreg():
            continue
        key, suffix = sample_key(info.name)
        sample = samples.setdefault(key, {})
        if suffix in IMAGE_SUFFIXES:
            sample.setdefault("image", info.name)
        elif suffix in TEXT_SUFFIXES:
            f = tar.extractfile(info)
            raw = f.read().decode("utf-8", errors="replace") if f else ""
            sample[suffix] = raw if suffix == "txt" else _json_or_error(raw)
    return samples


def _json_or_error(raw: str) -> object:
    try:
        return json.loads(raw)
    except json.JSONDecodeError as e:
        return BadFile("invalid_record", f"invalid JSON: {e}")


def load_webdataset(path: Path, source: str) -> pl.DataFrame:
    try:
        with tarfile.open(path, "r:") as tar:
            samples = _samples(tar)
    except (tarfile.TarError, OSError) as e:
        return to_source_records([file_reject(source, WEBDATASET, BadFile("malformed_file", f"not a tar: {e}"))])
    rows: list[dict] = []
    for key, sample in samples.items():
        meta = sample.get("json", {})
        if not isinstance(meta, dict):
            detail = meta.detail if isinstance(meta, BadFile) else "the json member is not an object"
            rows.append({"source": source, "source_format": WEBDATASET, "kind": INVALID,
                         "record_id": f"{source}#json/{key}", "reject_reason": "invalid_record",
                         "reject_detail": detail[:300]})
            meta = {}
        image, txt = sample.get("image"), sample.get("txt")
        rows += sample_rows(source, WEBDATASET, key, image if isinstance(image, str) else None,
                            txt if isinstance(txt, str) else None, meta)
    return to_source_records(rows + _sidecar_rows(path, source, set(samples)))


def sidecar(path: Path) -> list[Path]:
    """img2dataset's metadata-only Parquet beside a tar (`00000.tar` -> `00000.parquet`); a Parquet
    of image bytes of that name is a shard of its own, not this tar's companion."""
    side = path.with_suffix(".parquet")
    return [side] if side.is_file() and not detect_parquet_images(side, b"") else []


def _sidecar_rows(path: Path, source: str, in_tar: set[str]) -> list[dict]:
    """Reject rows for the samples the sidecar lists and the tar lacks (failed downloads)."""
    import pyarrow.parquet as pq

    found = sidecar(path)
    if not found:
        return []
    side = found[0]
    try:
        names = pq.read_schema(side).names
        wanted = [c for c in ("key", "status", "error_message", "caption") if c in names]
        if "key" not in wanted:
            return []  # not img2dataset's metadata file
        rows: list[dict] = []
        for meta in pq.read_table(side, columns=wanted).to_pylist():
            key = str(meta["key"]) if meta["key"] is not None else None
            if key and key not in in_tar:
                rows += sample_rows(source, WEBDATASET, key, None, None, meta)
        return rows
    except Exception as e:  # noqa: BLE001 - an unreadable sidecar is one reject row
        return [{"source": source, "source_format": WEBDATASET, "kind": INVALID, "record_id": f"{source}#sidecar",
                 "reject_reason": "malformed_file", "reject_detail": f"{side.name}: {e}"[:300]}]


def detect_webdataset(path: Path, head: bytes) -> int:
    if path.suffix != ".tar":
        return NO
    names = []
    try:
        with tarfile.open(fileobj=io.BytesIO(head), mode="r:") as tar:
            for info in tar:
                names.append(info.name)
    except (tarfile.TarError, OSError, EOFError):
        pass  # the head cuts a member short: the names read so far are enough
    return SIGNATURE if any(sample_key(n)[1] in TEXT_SUFFIXES for n in names) else NO


# -- parquet_images ----------------------------------------------------------------------------


def _image_bytes_column(schema) -> str | None:
    import pyarrow as pa

    column = parquet_image_column(schema.names)
    if column is None:
        return None
    t = schema.field(column).type
    ok = pa.types.is_binary(t) or pa.types.is_large_binary(t) or (
        pa.types.is_struct(t) and t.get_field_index("bytes") >= 0)
    return column if ok else None


def detect_parquet_images(path: Path, head: bytes) -> int:
    if path.suffix != ".parquet":
        return NO
    import pyarrow.parquet as pq

    try:
        return SIGNATURE if _image_bytes_column(pq.read_schema(path)) else NO
    except Exception:  # noqa: BLE001 - not readable as Parquet: the records loader says why
        return NO


def _has_bytes(values) -> list[bool]:
    """Per row, whether the image cell holds bytes (reads one row group's column at a time)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_struct(values.type):
        values = pc.struct_field(values, "bytes")
    return [bool(v) for v in pc.fill_null(pc.greater(pc.binary_length(values), 0), False).to_pylist()]


def load_parquet_images(path: Path, source: str) -> pl.DataFrame:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
        column = _image_bytes_column(pf.schema_arrow)
        if column is None:
            raise ValueError("no image-bytes column (jpg, png, webp or image)")
        others = [c for c in pf.schema_arrow.names if c != column]
        rows: list[dict] = []
        index = 0
        for g in range(pf.num_row_groups):
            present = _has_bytes(pf.read_row_group(g, columns=[column]).column(0))
            meta_rows = pf.read_row_group(g, columns=others).to_pylist() if others else [{}] * len(present)
            for meta, has in zip(meta_rows, present, strict=True):
                key = parquet_row_key(index, meta.get(PARQUET_KEY_COLUMN))
                txt = next((meta[c] for c in CAPTION_COLUMNS if nonempty_str(meta.get(c))), None)
                rows += sample_rows(source, PARQUET_IMAGES, key, key if has else None, txt,
                                    {k: v for k, v in meta.items() if k != "caption"})
                index += 1
    except Exception as e:  # noqa: BLE001 - an unreadable file is one reject row, never an exception
        return to_source_records([file_reject(source, PARQUET_IMAGES, BadFile("malformed_file", str(e)))])
    return to_source_records(rows)


WEBDATASET_LOADER = Loader(WEBDATASET, load_webdataset, detect_webdataset, sidecar, suffixes=(".tar",), shard=True,
                           description="WebDataset tar shards (img2dataset): image + .txt / .json per sample")
PARQUET_IMAGES_LOADER = Loader(PARQUET_IMAGES, load_parquet_images, detect_parquet_images, suffixes=(".parquet",),
                               shard=True, description="Parquet shards with image bytes (img2dataset, Hugging Face)")
