"""ScienceQA loader (format `scienceqa`): ScienceQA's `problems.json`, with `pid_splits.json` as its
companion.

The release (https://scienceqa.github.io, data/scienceqa/ of https://github.com/lupantech/ScienceQA):

    problems.json     {"<pid>": {"question", "choices": [strings], "answer": <index into choices>,
                                 "hint", "image": "image.png" | null, "task", "grade", "subject",
                                 "topic", "category", "skill", "lecture", "solution", "split"}}
    pid_splits.json   {"train": [pids], "val": [...], "test": [...], ...}
    images/<split>/<pid>/image.png

Confirmed from public readers of the files: these keys, `answer` an integer index into `choices`,
`image` a file name or null (text-only problems), `split` train / val / test, and the image folder
layout `<split>/<pid>/<image>`. Not confirmed: every key of pid_splits.json beyond train / val /
test (it is only a companion: part of the dataset version, not read).

Rows (see ..records), problems in file order:
  * one "image" row per problem with an image, `<source>#image/<pid>`, no width/height, image_key
    `<split>/<pid>/<image>`, so `images:` in dataset.yaml names the `images/` folder;
  * one "qa" row per problem, `<source>#qa/<pid>`, multiple choice as for A-OKVQA: text =
    "<question> Options: <c1>, <c2>, ….", answer = choices[answer]. Decision: the `hint` is the
    problem's context (often text the question cannot be answered without), so a non-empty hint
    leads the text: "Context: <hint> <question> Options: …";
  * of a problem whose QA row is kept, one "caption" row for a non-empty `lecture`
    (`<source>#caption/<pid>/lecture`, "Background: <lecture>") and one for a non-empty `solution`
    (`<source>#caption/<pid>/solution`, "Solution: <solution>"), as Instructify's reference keeps
    them: facts the conversations may draw on (the lecture teaches the subject, the solution explains
    the answer), whitespace collapsed.
So rows == problems + problems with a usable image + their non-empty lectures and solutions.

Rejects: unsafe_path (a pid or image that leaves the folder) > invalid_record (entry not an object;
pid with '/', '#' or spaces; no image: "text-only problem"; split not a plain word; question empty;
choices not a list of non-empty strings; answer not an index into choices). A whole unreadable file
is one `<source>#file` row: malformed_file (empty, not JSON), unknown_format (top-level value not an
object).
"""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl

from ..records import CAPTION, to_source_records
from .common import BadFile, file_reject, nonempty_str
from .registry import NO, SIGNATURE, Loader
from .textrich_common import Rows, read_top, safe_id, strip_bom

FORMAT = "scienceqa"
_SPLIT = re.compile(r"^[A-Za-z]+$")


def companions(path: Path) -> list[Path]:
    return [Path(path).with_name("pid_splits.json")]


def detect(path: Path, head: bytes) -> int:
    """2 for ScienceQA's problems.json (problems with choices, lecture and solution), else 0."""
    text = strip_bom(head)
    if path.suffix != ".json" or text.lstrip()[:1] != b"{" or b'"choices"' not in text:
        return NO
    if (b'"lecture"' in text and b'"solution"' in text) or (path.name == "problems.json" and b'"hint"' in text):
        return SIGNATURE
    return NO


def _mc(e: dict) -> tuple[str, str] | str:
    """(text with options, correct choice), or why the multiple-choice fields are unusable."""
    choices, idx = e.get("choices"), e.get("answer")
    if not isinstance(choices, list) or not choices or not all(nonempty_str(c) for c in choices):
        return "choices is not a list of non-empty strings"
    if not isinstance(idx, int) or isinstance(idx, bool) or not 0 <= idx < len(choices):
        return f"answer {idx!r} is not an index into the {len(choices)} choices"
    options = [c.strip() for c in choices]
    text = f"{e['question'].strip()} Options: {', '.join(options)}."
    if nonempty_str(e.get("hint")):
        text = f"Context: {e['hint'].strip()} {text}"
    return text, options[idx]


def load_scienceqa(path: Path, source: str) -> pl.DataFrame:
    """ScienceQA's problems.json -> source records (module docstring). Bad data never raises; only
    an unreadable path (OSError) does."""
    path = Path(path)
    try:
        problems = read_top(path, dict, "ScienceQA")
    except BadFile as e:
        return to_source_records([file_reject(source, FORMAT, e)])
    out = Rows(source, FORMAT)
    for i, (raw_pid, entry) in enumerate(problems.items()):
        pid = safe_id(raw_pid)
        if pid is None or not isinstance(entry, dict):
            why = (f"pid {raw_pid[:80]!r} is empty or has '/', '#' or spaces" if pid is None
                   else f"entry is not an object ({type(entry).__name__})")
            out.qa(pid, i, None, None, None, ("invalid_record", why))
            continue
        split, image = entry.get("split"), entry.get("image")
        key, problem = None, None
        if not nonempty_str(image):
            problem = ("invalid_record", "text-only problem: no image")
        elif not (nonempty_str(split) and _SPLIT.match(split)):
            problem = ("invalid_record", f"split {split!r} is not a plain word")
        else:
            key, unsafe = out.key(f"{split}/{pid}/{image}")
            if unsafe or key is None or not key.startswith(f"{split}/{pid}/"):  # key is None: unsafe
                key, problem = None, ("unsafe_path", unsafe or f"image {image!r} leaves its problem's folder")
            else:
                key = out.image(pid, key)
        text, answer = entry.get("question"), None
        if problem is None and nonempty_str(text):
            mc = _mc(entry)
            if isinstance(mc, str):
                problem = ("invalid_record", mc)
            else:
                text, answer = mc
        row = out.qa(pid, i, key, text, answer, problem)
        if not row.get("reject_reason"):
            out.rows += _teaching(entry, pid, key, out.base, source)
    return out.frame()


def _teaching(entry: dict, pid: str, key: str | None, base: dict, source: str) -> list[dict]:
    """The problem's lecture and solution as caption rows (module docstring)."""
    return [{**base, "record_id": f"{source}#caption/{pid}/{field}", "kind": CAPTION, "image_key": key,
             "text": f"{label}: {' '.join(entry[field].split())}"}
            for field, label in (("lecture", "Background"), ("solution", "Solution")) if nonempty_str(entry.get(field))]


LOADER = Loader(FORMAT, load_scienceqa, detect, companions,
                description="ScienceQA problems.json (multiple choice, hint as context)")
