"""Shared pieces of the text-rich VQA loaders (stvqa, ocrvqa, docvqa, infographicvqa, chartqa,
scienceqa): reading the top-level JSON value, and building image + QA rows with the usual reject
order (unsafe_path > invalid_record > duplicate_record_id), so that every input record is a row.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import msgspec
import polars as pl

from ..paths import UnsafePath, normalise_image_key
from ..records import IMAGE, QA, to_source_records
from .common import BadFile, json_bytes, nonempty_str
from .common import most_common as common_most_common
from .vqa import json_type

DETAIL_MAX = 300
_ANY = msgspec.json.Decoder()
_BOM = b"\xef\xbb\xbf"


def strip_bom(head: bytes) -> bytes:
    return head[3:] if head[:3] == _BOM else head


def read_top(path: Path, want: type, what: str) -> Any:
    """The file's top-level JSON value, which must be a `want` (list or dict); raises BadFile
    (malformed_file: empty, not JSON; unknown_format: another top-level type)."""
    buf = json_bytes(path)
    try:
        data = _ANY.decode(buf)
    except msgspec.DecodeError as e:
        raise BadFile("malformed_file", f"invalid JSON: {e}") from None
    if not isinstance(data, want):
        raise BadFile("unknown_format", f"top-level JSON value is {json_type(data)}, not a {what} "
                                        f"{'list' if want is list else 'object'}")
    return data


def data_list(path: Path, what: str) -> tuple[list, dict]:
    """(the `data` list, the other top-level fields) of a {"data": [...], ...} file; raises BadFile."""
    doc = read_top(path, dict, what)
    if "data" not in doc:
        keys = ", ".join(sorted(map(str, doc))[:8]) or "none"
        raise BadFile("unknown_format", f"JSON object has no 'data' list (keys: {keys})")
    if not isinstance(doc["data"], list):
        raise BadFile("unknown_format", f"'data' is {json_type(doc['data'])}, not a list")
    return doc.pop("data"), doc


def most_common(answers: Any) -> str | None:
    """common.most_common of an answers list; anything but a list (a bare string, say) has no answer."""
    return common_most_common(answers if isinstance(answers, list) else None)


def as_answer(value: Any) -> str | None:
    """A single answer given as a string or a number (ChartQA labels, OCR-VQA answers)."""
    if nonempty_str(value):
        return value.strip()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(int(value)) if float(value).is_integer() else str(value)
    return None


_UNSAFE_ID = re.compile(r"[/#\s]")


def safe_id(value: Any) -> str | None:
    """An id usable inside a record id: an integer, or a string without '/', '#' or spaces."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if nonempty_str(value) and not _UNSAFE_ID.search(value):
        return value
    return None


class Rows:
    """Image and QA rows of one source. `image` adds one image row per image id; `qa` one QA row per
    input record, rejected with the first problem found."""

    def __init__(self, source: str, fmt: str):
        self.source, self.base = source, {"source": source, "source_format": fmt}
        self.rows: list[dict] = []
        self.images: dict[str, str] = {}
        self.seen: dict[str, int] = {}

    def key(self, raw: Any) -> tuple[str | None, str | None]:
        """(normalised image key, None) or (None, why it is unsafe)."""
        try:
            return normalise_image_key(raw), None
        except UnsafePath as e:
            return None, str(e)

    def image(self, image_id: str, key: str, width: int | None = None, height: int | None = None) -> str:
        """Add the image row of `image_id` once; returns the key the image has (the first one given)."""
        if image_id not in self.images:
            self.images[image_id] = key
            self.rows.append({**self.base, "record_id": f"{self.source}#image/{image_id}", "kind": IMAGE,
                              "image_key": key, "width": width, "height": height})
        return self.images[image_id]

    def qa(self, native: str | None, index: int, key: str | None, text: Any, answer: str | None,
           problem: tuple[str, str] | None = None) -> dict:
        """One QA row `<source>#qa/<native>` (`@<index>` without a usable id, `<native>@<index>` when
        the id repeats). `problem` is (reason, detail); else a missing key, text or answer rejects."""
        dup = native is not None and native in self.seen
        rid = f"@{index}" if native is None else f"{native}@{index}" if dup else native
        row = {**self.base, "record_id": f"{self.source}#qa/{rid}", "kind": QA, "image_key": key,
               "text": text.strip() if nonempty_str(text) else None, "answer": answer}
        if problem is None:
            if native is None:
                problem = ("invalid_record", "the question id is missing or unusable")
            elif key is None:
                problem = ("invalid_record", "no usable image")
            elif row["text"] is None:
                problem = ("invalid_record", "question is missing or empty")
            elif dup:
                problem = ("duplicate_record_id", f"question id {native} repeats entry [{self.seen[native]}]")
            elif answer is None:
                problem = ("invalid_record", "no usable answer")
        if problem:
            row["reject_reason"], row["reject_detail"] = problem[0], problem[1][:DETAIL_MAX]
        if native is not None:
            self.seen.setdefault(native, index)
        self.rows.append(row)
        return row

    def frame(self) -> pl.DataFrame:
        return to_source_records(self.rows)
