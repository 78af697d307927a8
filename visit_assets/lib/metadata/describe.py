"""Deterministic text rendering of a grouped image record: what later stages feed the LLM.

Positions are coarse on purpose (thirds of the image): text LLMs reason well about
"top left" and poorly about raw coordinates. A label with more than 8 boxes is one line "many
<label>s (n) spread across the image": "many" after Instructify's rule, the count kept in brackets
because this text grounds MM-Instruct's answers, which may count. Instructify's own layout facts
(instructify/facts.py) drop the number, as its rule does.
"""

from __future__ import annotations

from collections import defaultdict

MANY = 8
# A handful of irregular plurals common in detection labels; the rest take -s / -es.
_IRREGULAR = {"person": "people", "man": "men", "woman": "women", "child": "children",
              "mouse": "mice", "sheep": "sheep", "fish": "fish", "skis": "skis", "scissors": "scissors"}


def plural(label: str, n: int) -> str:
    if n == 1:
        return label
    if label in _IRREGULAR:
        return _IRREGULAR[label]
    return label + ("es" if label.endswith(("s", "x", "ch", "sh")) else "s")


def position(x1: float, y1: float, x2: float, y2: float) -> str:
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    col = "left" if cx < 1 / 3 else "right" if cx > 2 / 3 else ""
    row = "top" if cy < 1 / 3 else "bottom" if cy > 2 / 3 else ""
    return f"{row} {col}".strip() or "centre"


def size_word(x1: float, y1: float, x2: float, y2: float) -> str:
    area = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    return "large" if area > 0.25 else "small" if area < 0.02 else "medium"


def describe_objects(boxes: list[dict]) -> list[str]:
    """One line per label: count, then each instance's coarse position and size."""
    by_label: dict[str, list[dict]] = defaultdict(list)
    for box in boxes:
        by_label[box["label"]].append(box)
    lines = []
    for label in sorted(by_label, key=lambda lb: (-len(by_label[lb]), lb)):
        items = by_label[label]
        n = len(items)
        if n > MANY:
            lines.append(f"many {plural(label, n)} ({n}) spread across the image")
            continue
        places = [f"{position(b['x1'], b['y1'], b['x2'], b['y2'])} ({size_word(b['x1'], b['y1'], b['x2'], b['y2'])})"
                  for b in sorted(items, key=lambda b: (b["x1"], b["y1"]))]
        lines.append(f"{n} {plural(label, n)}: " + ", ".join(places))
    return lines


def describe(record: dict) -> str:
    """Render captions, objects, QA facts and OCR as one plain-text description."""
    parts = []
    if record.get("captions"):
        parts.append("Captions:\n" + "\n".join(f"- {c}" for c in record["captions"]))
    if record.get("boxes"):
        parts.append("Objects (coarse position and size in the image):\n"
                     + "\n".join(f"- {line}" for line in describe_objects(record["boxes"])))
    if record.get("qa"):
        parts.append("Known facts (question and answer):\n"
                     + "\n".join(f"- {q['question']} {q['answer']}" for q in record["qa"]))
    if record.get("ocr"):
        parts.append("Text visible in the image:\n" + "\n".join(f'- "{t}"' for t in record["ocr"]))
    size = f"The image is {record['width']}x{record['height']} pixels." if record.get("width") else ""
    return "\n\n".join(([size] if size else []) + parts)


def fact_count(record: dict) -> int:
    """Facts later stages can consume: captions, objects and QA pairs, OCR lines."""
    return sum(len(record.get(k) or []) for k in ("captions", "boxes", "qa", "ocr"))
