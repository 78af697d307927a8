"""ChartQA loader (format `chartqa`): one ChartQA question file.

The release ("ChartQA Dataset", https://github.com/vis-nlp/ChartQA) has one folder per split (train,
val, test), each holding `png/` (the charts), `tables/` and two question files, each a top-level
JSON list:

    <split>/<split>_human.json       [{"imgname", "query", "label"}]   human-written questions
    <split>/<split>_augmented.json   [{"imgname", "query", "label"}]   machine-generated questions

Confirmed from the release's README and public readers: the folder layout, the file names, the three
keys, and `imgname` being a file name inside `<split>/png/`. The full release adds an `annotations/`
folder (chart element boxes), not read here. Not confirmed: whether every `label` is a string (a
number is taken too, as its decimal text).

Rows (see ..records), entries in file order:
  * one "image" row per distinct imgname, `<source>#image/<imgname>`, no width/height, image_key
    `<split>/png/<imgname>` (the split from the file name; without one, `png/<imgname>`), so
    `images:` in dataset.yaml names the "ChartQA Dataset" folder;
  * one "qa" row per entry, `<source>#qa/<index>` (ChartQA has no question ids): text = query,
    answer = label.
So rows == entries + distinct usable imgnames.

Rejects: unsafe_path (an imgname that is absolute or leaves the folder) > invalid_record (entry not
an object, imgname not a non-empty string, query empty, label missing / empty / not a string or
number). A whole unreadable file is one `<source>#file` row: malformed_file (empty, not JSON),
unknown_format (top-level value not a list).
"""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl

from ..records import to_source_records
from .common import BadFile, file_reject, nonempty_str
from .registry import NO, SIGNATURE, Loader
from .textrich_common import Rows, as_answer, read_top, strip_bom

FORMAT = "chartqa"
_NAME = re.compile(r"^(?P<split>train|val|test)_(?:human|augmented)\.json$")


def detect(path: Path, head: bytes) -> int:
    """2 for a ChartQA question file (a JSON list of {imgname, query, label}), else 0."""
    text = strip_bom(head)
    if path.suffix != ".json" or text.lstrip()[:1] != b"[":
        return NO
    return SIGNATURE if b'"imgname"' in text and b'"query"' in text and b'"label"' in text else NO


def load_chartqa(path: Path, source: str) -> pl.DataFrame:
    """A ChartQA question file -> source records (module docstring). Bad data never raises; only an
    unreadable path (OSError) does."""
    path = Path(path)
    try:
        entries = read_top(path, list, "ChartQA")
    except BadFile as e:
        return to_source_records([file_reject(source, FORMAT, e)])
    m = _NAME.match(path.name)
    prefix = f"{m['split']}/png/" if m else "png/"
    out = Rows(source, FORMAT)
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            out.qa(str(i), i, None, None, None, ("invalid_record", f"entry is not an object ({type(entry).__name__})"))
            continue
        name = entry.get("imgname")
        key, unsafe = out.key(name) if nonempty_str(name) else (None, None)
        if key is not None:
            key = out.image(key, prefix + key)
        problem = None
        if unsafe:
            problem = ("unsafe_path", unsafe)
        elif key is None:
            problem = ("invalid_record", "imgname is missing or not a non-empty string")
        elif nonempty_str(entry.get("query")) and as_answer(entry.get("label")) is None:
            problem = ("invalid_record", "label is missing, empty, or not a string or number")
        out.qa(str(i), i, key, entry.get("query"), as_answer(entry.get("label")), problem)
    return out.frame()


LOADER = Loader(FORMAT, load_chartqa, detect, description="ChartQA question JSON (human / augmented)")
