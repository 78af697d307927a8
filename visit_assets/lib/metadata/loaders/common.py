"""Small helpers shared by the JSON-based loaders."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import TypeGuard

from ..paths import UnsafePath, normalise_image_key
from ..records import INVALID


class BadFile(Exception):
    """The whole file is unusable: becomes a single reject row, never an exception upward."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason, self.detail = reason, detail


def read_json(path: Path):
    """Parse a JSON file strictly as UTF-8; raise BadFile for anything unreadable."""
    data = path.read_bytes()
    if not data.strip():
        raise BadFile("malformed_file", "the file is empty")
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise BadFile("malformed_file", f"not UTF-8: {e}") from None
    except json.JSONDecodeError as e:
        raise BadFile("malformed_file", f"invalid JSON: {e}") from None


def json_bytes(path: Path) -> bytes:
    """A JSON file's bytes without a leading UTF-8 BOM; raises BadFile when it is empty or blank."""
    buf = path.read_bytes()
    if not buf.strip():
        raise BadFile("malformed_file", "the file is empty")
    return buf[3:] if buf[:3] == b"\xef\xbb\xbf" else buf


def file_reject(source: str, fmt: str, err: BadFile) -> dict:
    return {
        "source": source,
        "source_format": fmt,
        "record_id": f"{source}#file",
        "kind": INVALID,
        "reject_reason": err.reason,
        "reject_detail": err.detail[:500],
    }


def image_key_or_reject(raw: object, row: dict) -> dict:
    """Set row['image_key'], or mark the row unsafe_path; returns the row."""
    try:
        row["image_key"] = normalise_image_key(raw)
    except UnsafePath as e:
        row["image_key"] = None
        row["reject_reason"], row["reject_detail"] = "unsafe_path", str(e)[:500]
    return row


def nonempty_str(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and bool(value.strip())


def as_size(value: object) -> int | None:
    """A positive integer image side, or None when absent or nonsense."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return int(value) if value > 0 and float(value).is_integer() else None


def most_common(values: Iterable[object] | None) -> str | None:
    """The most common of the non-empty strings in `values` (stripped), ties going to the one seen
    first; None when there is none (or `values` is None). Counter keeps first-seen order and its
    most_common sorts stably: that is the tie rule."""
    words = [v.strip() for v in values or () if nonempty_str(v)]
    return Counter(words).most_common(1)[0][0] if words else None


MAX_PHRASE_WORDS = 12  # a longer phrase is not a box label: text_too_long


def phrase_label(phrase: str) -> str:
    """A phrase as a box label: whitespace collapsed, a final period dropped, the first letter
    lower-cased unless the first word is an acronym ("TV on the wall")."""
    text = " ".join(phrase.split()).rstrip(".").rstrip()
    first = text.split(" ", 1)[0]
    if text and not (len(first) > 1 and first.isupper()):
        text = text[0].lower() + text[1:]
    return text


def phrase_too_long(label: str, what: str = "phrase") -> str | None:
    """The text_too_long detail when a box label runs over MAX_PHRASE_WORDS words, else None."""
    n = len(label.split())
    return f"{what} has {n} words (over {MAX_PHRASE_WORDS})" if n > MAX_PHRASE_WORDS else None
