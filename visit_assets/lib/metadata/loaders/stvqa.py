"""ST-VQA loader (format `stvqa`): one ST-VQA (Scene Text VQA) task file.

The download from the Robust Reading Competition site (https://rrc.cvc.uab.es/?ch=11) holds one file
per task and split, `train_task_<1|2|3>.json` and `test_task_<1|2|3>.json`:

    {"data": [{"question_id", "question", "file_path", "answers": [strings], "dataset", "file_name", ...}]}

(test: no "answers"). Confirmed from public readers of the files: the top-level `data` list and, per
entry, `question_id` (an integer), `question`, `file_path` (the image path relative to the folder the
images archive unpacks to, e.g. `coco-text/COCO_train2014_….jpg`, one sub-folder per source dataset),
`answers`, `dataset` and `file_name`. Not confirmed: the other top-level fields (not read), and the
name of the folder the images archive unpacks to (so keys do not include it).
Detection: should a release's entries also carry TextVQA's `question_tokens`, the `textvqa` loader
claims the file too and detection reports ambiguous_format: name `format: stvqa` in dataset.yaml.

Rows (see ..records), entries in file order:
  * one "image" row per distinct image path, `<source>#image/<file_path>`, no width/height, image_key
    = `file_path` as given: `images:` in dataset.yaml names the folder holding `coco-text/`, … ;
  * one "qa" row per entry, `<source>#qa/<question_id>`: text = the question, answer = the most common
    of its answers (ties to the first in order). The three tasks share questions; load one task file
    per dataset (task 3, the open vocabulary one, is the usual choice) or the same QA appears thrice.
So rows == entries + distinct usable image paths.

Rejects: unsafe_path (a `file_path` that is absolute or leaves the folder) > invalid_record (entry
not an object; question_id not an integer; file_path not a non-empty string; question empty; no
non-empty answer: "no answers: the test split publishes questions only" for `test_task_*` files) >
duplicate_record_id (question_id seen before: `<question_id>@<index>`). A whole unreadable file is
one `<source>#file` row: malformed_file (empty, not JSON), unknown_format (no `data` list).
"""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl

from ..records import to_source_records
from .common import BadFile, file_reject, nonempty_str
from .registry import NO, SIGNATURE, Loader
from .textrich_common import Rows, data_list, most_common, strip_bom

FORMAT = "stvqa"
_NAME = re.compile(r"^(?P<split>train|test)_task_(?P<task>\d)\.json$")
_DATA_LIST = re.compile(rb'"data"\s*:\s*\[')


def detect(path: Path, head: bytes) -> int:
    """2 for an ST-VQA task file (a `data` list whose entries carry `file_path` and a question), else 0."""
    text = strip_bom(head)
    if path.suffix != ".json" or text.lstrip()[:1] != b"{" or not _DATA_LIST.search(text):
        return NO
    if b'"file_path"' in text and b'"question"' in text and b'"question_id"' in text:
        return SIGNATURE
    return NO


def load_stvqa(path: Path, source: str) -> pl.DataFrame:
    """An ST-VQA task file -> source records (module docstring). Bad data never raises; only an
    unreadable path (OSError) does."""
    path = Path(path)
    try:
        entries, _ = data_list(path, "ST-VQA")
    except BadFile as e:
        return to_source_records([file_reject(source, FORMAT, e)])
    m = _NAME.match(path.name)
    test = bool(m and m["split"] == "test")
    out = Rows(source, FORMAT)
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            out.qa(None, i, None, None, None, ("invalid_record", f"entry is not an object ({type(entry).__name__})"))
            continue
        qid = entry.get("question_id")
        native = str(qid) if isinstance(qid, int) and not isinstance(qid, bool) else None
        key, unsafe = out.key(entry.get("file_path")) if nonempty_str(entry.get("file_path")) else (None, None)
        if key is not None:
            key = out.image(key, key)
        answer = most_common(entry.get("answers"))
        problem = None
        if unsafe:
            problem = ("unsafe_path", unsafe)
        elif native is None:
            problem = ("invalid_record", "question_id is missing or not an integer")
        elif key is None:
            problem = ("invalid_record", "file_path is missing or not a non-empty string")
        elif answer is None and nonempty_str(entry.get("question")) and native not in out.seen:
            problem = ("invalid_record", "no answers: the test split publishes questions only" if test
                       else "no non-empty answer in answers")
        out.qa(native, i, key, entry.get("question"), answer, problem)
    return out.frame()


LOADER = Loader(FORMAT, load_stvqa, detect, description="ST-VQA task JSON (scene-text QA)")
