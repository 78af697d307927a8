"""DocVQA and InfographicVQA loaders (formats `docvqa`, `infographicvqa`): one question file of the
single-page DocVQA challenge ("SP-DocVQA", https://rrc.cvc.uab.es/?ch=17) or of InfographicVQA.

Both are {"data": [...], ...} objects, one entry per question (test files: no "answers"):

    DocVQA           train_v1.0_withQT.json, val_v1.0_withQT.json, test_v1.0.json (older: no _withQT)
                     {"data": [{"questionId", "question", "image": "documents/<name>.png", "answers",
                               "docId", "ucsf_document_id", "ucsf_document_page_no", "data_split",
                               "question_types"}], ...}
    InfographicVQA   infographicsVQA_train_v1.0.json, infographicsVQA_val_v1.0_withQT.json,
                     infographicsVQA_test_v1.0.json
                     {"data": [{"questionId", "question", "image_local_name": "<name>.jpeg", "answers",
                               "image_url", "ocr_output_file", ...}], ...}

Confirmed from public readers of the files: the file names, the `data` list, `questionId` (an
integer), `question`, `answers` (a list of equally valid strings), DocVQA's `image` (a path relative to
the split's folder, `<split>/documents/<name>.png` in the readers seen) and InfographicVQA's
`image_local_name` (a file name in the one images folder). Not confirmed: the other top-level
fields (not read) and the exact name of the images archives' folders.

Rows (see ..records), entries in file order:
  * one "image" row per distinct image, `<source>#image/<path>`, no width/height; image_key
    DocVQA: `<split>/<image>` (split from the file name; without one, `<image>` as given), so
    `images:` in dataset.yaml names the folder holding `train/`, `val/`, `test/`;
    InfographicVQA: `image_local_name` as given (`images:` names the folder holding the images);
  * one "qa" row per question, `<source>#qa/<questionId>`: text = the question, answer = the most
    common of its answers (ties to the first: the answers are variants of one correct answer).
    `question_types`, `answer_type`, `evidence` and the OCR files are not kept.
So rows == questions + distinct usable images.

Rejects: unsafe_path (an image path that is absolute or leaves the folder) > invalid_record (entry
not an object; questionId not an integer; image missing; question empty) > duplicate_record_id
(questionId seen before: `<questionId>@<index>`) > invalid_record (no non-empty answer: "no answers:
the test split publishes questions only" for test files). A whole unreadable file is one
`<source>#file` row: malformed_file (empty, not JSON), unknown_format (no `data` list).
"""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl

from ..records import to_source_records
from .common import BadFile, file_reject, nonempty_str
from .registry import NO, SIGNATURE, Loader
from .textrich_common import Rows, data_list, most_common, strip_bom

_DOC_NAME = re.compile(r"^(?P<split>train|val|test)_v[\d.]+(?:_withQT)?\.json$")
_INFO_NAME = re.compile(r"^infographicsVQA_(?P<split>train|val|test)_v[\d.]+(?:_withQT)?\.json$")
_DATA_LIST = re.compile(rb'"data"\s*:\s*\[')


def _qas_head(path: Path, head: bytes) -> bytes | None:
    text = strip_bom(head)
    if path.suffix != ".json" or text.lstrip()[:1] != b"{" or not _DATA_LIST.search(text):
        return None
    return text if re.search(rb'"questionId"\s*:', text) else None


def detect_docvqa(path: Path, head: bytes) -> int:
    """2 for a DocVQA question file (entries with questionId and image, not image_local_name), else 0."""
    text = _qas_head(path, head)
    if text is None or b'"image_local_name"' in text:
        return NO
    return SIGNATURE if re.search(rb'"image"\s*:\s*"', text) else NO


def detect_infographicvqa(path: Path, head: bytes) -> int:
    """2 for an InfographicVQA question file (entries with questionId and image_local_name), else 0."""
    text = _qas_head(path, head)
    return SIGNATURE if text is not None and b'"image_local_name"' in text else NO


def _load(path: Path, source: str, fmt: str, image_field: str, name: re.Pattern, split_folder: bool) -> pl.DataFrame:
    path = Path(path)
    try:
        entries, _ = data_list(path, fmt)
    except BadFile as e:
        return to_source_records([file_reject(source, fmt, e)])
    m = name.match(path.name)
    split = m["split"] if m else None
    prefix = f"{split}/" if split and split_folder else ""
    out = Rows(source, fmt)
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            out.qa(None, i, None, None, None, ("invalid_record", f"entry is not an object ({type(entry).__name__})"))
            continue
        qid = entry.get("questionId")
        native = str(qid) if isinstance(qid, int) and not isinstance(qid, bool) else None
        raw = entry.get(image_field)
        key, unsafe = out.key(raw) if nonempty_str(raw) else (None, None)
        if key is not None:
            key = out.image(key, prefix + key)
        answer = most_common(entry.get("answers"))
        problem = None
        if unsafe:
            problem = ("unsafe_path", unsafe)
        elif native is None:
            problem = ("invalid_record", "questionId is missing or not an integer")
        elif key is None:
            problem = ("invalid_record", f"{image_field} is missing or not a non-empty string")
        elif answer is None and nonempty_str(entry.get("question")) and native not in out.seen:
            problem = ("invalid_record", "no answers: the test split publishes questions only" if split == "test"
                       else "no non-empty answer in answers")
        out.qa(native, i, key, entry.get("question"), answer, problem)
    return out.frame()


def load_docvqa(path: Path, source: str) -> pl.DataFrame:
    """A DocVQA question file -> source records (module docstring). Bad data never raises."""
    return _load(path, source, "docvqa", "image", _DOC_NAME, split_folder=True)


def load_infographicvqa(path: Path, source: str) -> pl.DataFrame:
    """An InfographicVQA question file -> source records (module docstring). Bad data never raises."""
    return _load(path, source, "infographicvqa", "image_local_name", _INFO_NAME, split_folder=False)


LOADER = Loader("docvqa", load_docvqa, detect_docvqa, description="DocVQA (SP-DocVQA) question JSON")
INFOGRAPHIC_LOADER = Loader("infographicvqa", load_infographicvqa, detect_infographicvqa,
                            description="InfographicVQA question JSON")
