"""OCR-VQA loader (format `ocrvqa`): OCR-VQA's `dataset.json` (questions about book covers).

The release (https://ocr-vqa.github.io/) is one JSON object keyed by image id (an Amazon product id,
a string of digits and letters), with a script (`loadDataset.py`) that downloads each cover:

    dataset.json   {"<image id>": {"imageURL", "questions": [strings], "answers": [strings], "title",
                                   "authorName", "genre", "split": 1 | 2 | 3}}

Confirmed from public readers of the file: those keys, answers paired with questions by position,
split 1 = train, 2 = val, 3 = test, and each cover saved as `<image id><suffix of imageURL>`. Not
confirmed: the folder the download script saves into (`images/` in the readers seen); keys here are
the bare file names, so `images:` in dataset.yaml names the folder holding the covers.

Rows (see ..records), entries in file order:
  * one "image" row per entry, `<source>#image/<image id>`, no width/height, image_key
    `<image id><suffix>` (the suffix of imageURL's path: .jpg, .jpeg, .png or .gif);
  * one "qa" row per position n of questions / answers, `<source>#qa/<image id>/<n>`: text = the
    question, answer = the answer at the same position (all splits carry answers; `split` is not used,
    the covers share one folder). `title`, `authorName` and `genre` are not kept: the questions
    already ask for them ("Who wrote this book?", "What is the genre of this book?").
So rows == usable entries + max(len(questions), len(answers)) per entry (+ one row per unusable entry).

Answers are strings; a number is taken as its decimal text. A JSON object keeps the last of two
equal keys, so an image id repeated in the file is not seen (the decoder keeps one entry).

Rejects: invalid_record (one row `<source>#qa/<image id>` for an entry that is not an object or has
no questions / answers lists, `<source>#qa/@<index>` for an image id with '/', '#' or spaces;
imageURL missing or without an image suffix: each of its questions; a question empty or without an
answer at its position, an answer without a question). A whole unreadable file is one
`<source>#file` row: malformed_file (empty, not JSON), unknown_format (top-level value not an object).
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

import polars as pl

from ..records import to_source_records
from .common import BadFile, file_reject, nonempty_str
from .registry import NO, SIGNATURE, Loader
from .textrich_common import Rows, as_answer, read_top, safe_id, strip_bom

FORMAT = "ocrvqa"
_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif")


def detect(path: Path, head: bytes) -> int:
    """2 for OCR-VQA's dataset.json (an object of entries with imageURL and questions), else 0."""
    text = strip_bom(head)
    if path.suffix != ".json" or text.lstrip()[:1] != b"{":
        return NO
    if b'"imageURL"' in text and re.search(rb'"questions"\s*:\s*\[', text) and b'"answers"' in text:
        return SIGNATURE
    return NO


def _suffix(url: object) -> str | None:
    if not nonempty_str(url):
        return None
    suffix = PurePosixPath(urlparse(url.strip()).path).suffix
    return suffix if suffix.lower() in _SUFFIXES else None


def load_ocrvqa(path: Path, source: str) -> pl.DataFrame:
    """OCR-VQA's dataset.json -> source records (module docstring). Bad data never raises; only an
    unreadable path (OSError) does."""
    path = Path(path)
    try:
        entries = read_top(path, dict, "OCR-VQA")
    except BadFile as e:
        return to_source_records([file_reject(source, FORMAT, e)])
    out = Rows(source, FORMAT)
    for i, (raw_id, entry) in enumerate(entries.items()):
        image_id = safe_id(raw_id)
        if image_id is None or not isinstance(entry, dict):
            why = (f"image id {raw_id[:80]!r} is empty or has '/', '#' or spaces" if image_id is None
                   else f"entry is not an object ({type(entry).__name__})")
            out.qa(image_id, i, None, None, None, ("invalid_record", why))
            continue
        suffix = _suffix(entry.get("imageURL"))
        key = out.image(image_id, f"{image_id}{suffix}") if suffix else None
        raw_questions, raw_answers = entry.get("questions"), entry.get("answers")
        questions = raw_questions if isinstance(raw_questions, list) else []
        answers = raw_answers if isinstance(raw_answers, list) else []
        if not questions and not answers:
            out.qa(image_id, i, key, None, None, ("invalid_record", "no questions / answers lists"))
            continue
        for n in range(max(len(questions), len(answers))):
            q = questions[n] if n < len(questions) else None
            a = as_answer(answers[n]) if n < len(answers) else None
            problem = None
            if key is None:
                problem = ("invalid_record", "imageURL is missing or has no image file suffix")
            elif n >= len(questions):
                problem = ("invalid_record", f"answer [{n}] has no question")
            elif nonempty_str(q) and a is None:
                problem = ("invalid_record", f"question [{n}] has no answer")
            out.qa(f"{image_id}/{n}", i, key, q, a, problem)
    return out.frame()


LOADER = Loader(FORMAT, load_ocrvqa, detect, description="OCR-VQA dataset.json (book-cover QA)")
