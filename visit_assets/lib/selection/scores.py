"""InstructionGPT-4's quality scores (paper section 3.2, Table 1), each from its own model:

C = CLIP score (100 x cosine of image and answer embeddings), L = answer length (characters),
R = reward-model score, G = LLM judge score (0-100 from instruction + answer, no image). How they
are weighted into F is the selection's business (final_score.py). `scale_0_100` is the min-max
view quality_scores stores beside each raw score.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from visit_assets.lib.prompts import load_prompt, prompt_dir

# Paper Table 2 (fixed weights, set by hand by the authors).
DEFAULT_WEIGHTS: dict[str, float] = {"clip": 0.53, "length": 0.10, "reward": 0.10, "judge": 0.27}
SCORE_NAMES = tuple(DEFAULT_WEIGHTS)

SCALE_LO, SCALE_HI = 0.0, 100.0
CONSTANT_VALUE = 50.0  # a column whose finite values are all equal carries no ranking signal


def length_score(texts: Sequence[str | None]) -> np.ndarray:
    """Answer length in characters (after stripping surrounding whitespace); None -> NaN."""
    return np.array([np.nan if t is None else float(len(str(t).strip())) for t in texts], dtype=np.float64)


def clip_score(image_vecs: Any, text_vecs: Any) -> np.ndarray:
    """100 x cosine(image_i, text_i) per row.

    Inputs are meant to be L2-normalised already; the cosine is still computed with the norms, so
    a slightly off normalisation does not leak into the score. A row with NaN in either vector, or
    a zero vector, gives NaN.
    """
    a = np.asarray(image_vecs, dtype=np.float64)
    b = np.asarray(text_vecs, dtype=np.float64)
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"image and text vectors must be 2-D and the same shape, got {a.shape} and {b.shape}")
    dot = np.einsum("ij,ij->i", a, b)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.where(norms > 0, dot / np.where(norms > 0, norms, 1.0), np.nan)
    return 100.0 * np.clip(cos, -1.0, 1.0)


def scale_0_100(values: Any) -> tuple[np.ndarray, dict[str, Any]]:
    """Min-max scale to 0-100 over all finite values (one dataset version).

    NaN stays NaN, and so does +-inf (counted in the record as non-finite). A column whose finite
    values are all equal maps to 50 (CONSTANT_VALUE): no information, placed mid-scale. A column
    without any finite value stays all NaN. Returns (scaled float64 array, record) where the record
    states method, min, max and counts, for lineage.
    """
    v = np.array([np.nan if x is None else x for x in values], dtype=np.float64) \
        if not isinstance(values, np.ndarray) else values.astype(np.float64, copy=True)
    if v.ndim != 1:
        raise ValueError(f"scale_0_100 expects a 1-D array, got shape {v.shape}")
    finite = np.isfinite(v)
    record: dict[str, Any] = {
        "method": "min-max",
        "target": [SCALE_LO, SCALE_HI],
        "n": int(v.size),
        "n_missing": int(np.isnan(v).sum()),
        "n_nonfinite": int((~finite & ~np.isnan(v)).sum()),
        "min": None,
        "max": None,
    }
    out = np.full(v.shape, np.nan)
    if not finite.any():
        record["method"] = "all-missing"
        return out, record
    lo, hi = float(v[finite].min()), float(v[finite].max())
    record["min"], record["max"] = lo, hi
    if hi == lo:
        record["method"] = f"constant->{CONSTANT_VALUE:g}"
        out[finite] = CONSTANT_VALUE
    else:
        # divide first: (hi - lo) / (hi - lo) is exactly 1, so the top lands on SCALE_HI exactly
        out[finite] = SCALE_LO + (v[finite] - lo) / (hi - lo) * (SCALE_HI - SCALE_LO)
    return out, record


# ---------------------------------------------------------------------------------------------
# LLM judge score G(x)

# The judge prompt: visit_assets/prompts/selection/judge_score.yaml. Edit the wording there and bump
# its `version`: it changes the scores. Rows record "<JUDGE_PROMPT_ID>@<JUDGE_PROMPT_VERSION>"; the
# version is kept a string here, as the rows have always stored it.
JUDGE_PROMPT = load_prompt("judge_score", prompt_dir("selection"))
JUDGE_PROMPT_ID: str = JUDGE_PROMPT.id
JUDGE_PROMPT_VERSION: str = str(JUDGE_PROMPT.version)


def judge_request_messages(instruction: str, answer: str) -> list[dict[str, str]]:
    """Chat messages asking an LLM for a 0-100 quality score (prompt JUDGE_PROMPT_ID v JUDGE_PROMPT_VERSION)."""
    return JUDGE_PROMPT.messages({"instruction": instruction.strip(), "answer": answer.strip()}, strip=False)


JUDGE_OK = "ok"
JUDGE_EMPTY = "empty"
JUDGE_NO_SCORE = "no-score"
JUDGE_AMBIGUOUS = "ambiguous"  # several different numbers where one score was asked for
JUDGE_RANGE = "range"  # "80-90"
JUDGE_OUT_OF_RANGE = "out-of-range"
JUDGE_NON_INTEGER = "non-integer"
JUDGE_WRONG_SCALE = "wrong-scale"  # "8/10", "4 out of 5"
JUDGE_STATUSES = (JUDGE_OK, JUDGE_EMPTY, JUDGE_NO_SCORE, JUDGE_AMBIGUOUS, JUDGE_RANGE,
                  JUDGE_OUT_OF_RANGE, JUDGE_NON_INTEGER, JUDGE_WRONG_SCALE)

_NUM = r"[-+]?\d+(?:[.,]\d+)?"
_RANGE_RE = re.compile(r"(?<![\w.])\d+(?:\.\d+)?\s*(?:-|–|—|to)\s*\d+(?:\.\d+)?(?!\s*/)(?![\w.])", re.I)
_FRACTION_RE = re.compile(rf"({_NUM})\s*(?:/|out\s+of|of)\s*(\d+(?:\.\d+)?)", re.I)
_NUMBER_RE = re.compile(rf"(?<![\w.]){_NUM}(?![\w])")
_LABELLED_RE = re.compile(  # the label, its number, and a "/100" or "-90" tail so those are judged too
    rf"\b(?:score|rating|grade)\b\s*(?:is|of|=|:)?\s*[:=]?\s*{_NUM}"
    rf"(?:\s*(?:/|out\s+of|-|–|—|to)\s*\d+(?:\.\d+)?)?", re.I)
_MARKUP_RE = re.compile(r"[*_`#>\[\]()]")
_SCALE_MENTION_RE = re.compile(r"(?:on\s+a\s+scale\s+)?(?:of\s+|from\s+)?(?<![\w.])0\s*(?:-|–|—|to)\s*100(?![\w.])", re.I)


def _clean(line: str) -> str:
    line = _MARKUP_RE.sub(" ", line)
    line = _SCALE_MENTION_RE.sub(" ", line)  # "(0-100)" names the scale, it is not a range answer
    line = re.sub(r"^\s*(?:[-•]\s+|\d+[.)]\s+)", "", line)  # list bullets ("- ", "1. ")
    return line.replace("%", " ")


def _score_in(line: str) -> tuple[int | None, str]:
    """Find the one score in a line: (score, status), or (None, JUDGE_NO_SCORE) if it has no number."""
    if _RANGE_RE.search(line):
        return None, JUDGE_RANGE
    values: list[str] = []
    for m in _FRACTION_RE.finditer(line):
        if float(m.group(2)) != 100:
            return None, JUDGE_WRONG_SCALE
        values.append(m.group(1))
    line = _FRACTION_RE.sub(" ", line)
    values += _NUMBER_RE.findall(line)
    if not values:
        return None, JUDGE_NO_SCORE
    distinct = {float(v.replace(",", ".")) for v in values}
    if len(distinct) > 1:
        return None, JUDGE_AMBIGUOUS
    value = distinct.pop()
    if value != int(value):  # "85.0" is 85; "85.5" is not a score on the asked scale
        return None, JUDGE_NON_INTEGER
    if not 0 <= value <= 100:
        return None, JUDGE_OUT_OF_RANGE
    return int(value), JUDGE_OK


def parse_judge(text: str | None) -> tuple[int | None, str]:
    """Parse a judge reply into (score 0-100, "ok") or (None, failure status). Never a default.

    The prompt asks for the score alone on the first line. The first non-empty line must hold one
    score ("85", "Score: 85", "85/100", "**85**", "85%"); several different numbers, a range, a
    decimal, another scale or a value outside 0-100 is a failure. Only if the first line has no
    number at all is the rest searched, and then only for an explicitly labelled score
    ("Score: 85"); numbers inside an explanation are never taken for the score.
    """
    if text is None or not text.strip():
        return None, JUDGE_EMPTY
    lines = [ln for ln in (_clean(raw).strip() for raw in text.strip().splitlines()) if ln]
    if not lines:
        return None, JUDGE_NO_SCORE
    score, status = _score_in(lines[0])
    if status != JUDGE_NO_SCORE:
        return score, status
    labelled = [m.group(0) for ln in lines[1:] for m in _LABELLED_RE.finditer(ln)]
    if not labelled:
        return None, JUDGE_NO_SCORE
    results = {_score_in(s) for s in labelled}
    if len(results) > 1:
        return None, JUDGE_AMBIGUOUS
    return results.pop()
