"""The generic record format: JSONL (one object per line) or Parquet (one row per object).

Each object describes one image and may carry any of:
    {"id": "optional", "image": "path/relative/to/images.jpg", "width": 640, "height": 480,
     "captions": ["..."], "ocr": ["..."],
     "qa": [{"question": "...", "answer": "..."}],
     "boxes": [{"label": "dog", "bbox": [x, y, w, h], "normalized": true, "depth": 0.2}]}
`bbox` is top-left x, y, width, height; in pixels unless `normalized` is true.
`depth` (optional) is the box's relative distance from the camera, a number in [0, 1]: 0 nearest,
1 farthest, e.g. the median of a depth map inside the box, normalised per image. Absent or null
means unknown; any other value rejects the box (`invalid_record`).
Every element becomes its own source record, so each can be accepted or rejected on its own.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from ..records import BOX, CAPTION, IMAGE, OCR, QA, to_source_records
from .common import BadFile, as_size, file_reject, image_key_or_reject, nonempty_str

FORMAT = "records"


def _iter_objects(path: Path):
    """Yield (line_no, object or error string) for JSONL; Parquet rows as dicts."""
    if path.suffix == ".parquet":
        try:
            frame = pl.read_parquet(path)
        except Exception as e:  # pyarrow/polars raise several types for corrupt files
            raise BadFile("malformed_file", f"unreadable Parquet: {e}") from None
        yield from enumerate(frame.to_dicts(), start=1)
        return
    raw = path.read_bytes()
    if not raw.strip():
        raise BadFile("malformed_file", "the file is empty")
    for line_no, line in enumerate(raw.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            yield line_no, json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            yield line_no, f"line {line_no}: {type(e).__name__}: {e}"[:300]


def _element_rows(obj: dict, base: dict, rid: str) -> list[dict]:
    rows = []
    for kind, field in ((CAPTION, "captions"), (OCR, "ocr"), (QA, "qa"), (BOX, "boxes")):
        items = obj.get(field) or []
        if not isinstance(items, list):
            items = [items]
        for i, item in enumerate(items):
            row = {**base, "record_id": f"{base['source']}#{kind}/{rid}/{i}", "kind": kind}
            if kind in (CAPTION, OCR) and nonempty_str(item):
                row["text"] = item.strip()
            elif kind == QA and isinstance(item, dict) and nonempty_str(item.get("question")) \
                    and nonempty_str(item.get("answer")):
                row["text"], row["answer"] = item["question"].strip(), item["answer"].strip()
            elif kind == BOX and _valid_box(item) and (why := _bad_depth(item)):
                # A bad depth rejects the whole box rather than dropping the depth quietly: it means the
                # depth step that wrote the file is broken (unnormalised, wrong column), and the rejects
                # table is where every other bad field already shows; a kept box would hide that.
                row["reject_reason"], row["reject_detail"] = "invalid_record", f"{field}[{i}].depth {why}"
            elif kind == BOX and _valid_box(item):
                x, y, w, h = (float(v) for v in item["bbox"])
                row.update(label=item["label"].strip(), bbox_x=x, bbox_y=y, bbox_w=w, bbox_h=h,
                           bbox_norm=bool(item.get("normalized", False)), bbox_depth=item.get("depth"))
            else:
                row["reject_reason"] = "invalid_record"
                row["reject_detail"] = f"{field}[{i}] has the wrong shape: {str(item)[:120]}"
            rows.append(row)
    return rows


def _valid_box(item: object) -> bool:
    if not isinstance(item, dict) or not nonempty_str(item.get("label")):
        return False
    bbox = item.get("bbox")
    return isinstance(bbox, (list, tuple)) and len(bbox) == 4 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox
    )


def _bad_depth(item: dict) -> str | None:
    """Why a box's optional `depth` is unusable, or None when it is absent or a number in [0, 1]."""
    depth = item.get("depth")
    if depth is None:
        return None
    ok = isinstance(depth, (int, float)) and not isinstance(depth, bool) and 0 <= depth <= 1  # NaN fails too
    return None if ok else f"must be a number in [0, 1] (0 = nearest the camera), got {str(depth)[:40]}"


def load_records(path: Path, source: str) -> pl.DataFrame:
    base = {"source": source, "source_format": FORMAT}
    rows: list[dict] = []
    seen: set[str] = set()
    try:
        for line_no, obj in _iter_objects(path):
            if not isinstance(obj, dict):
                detail = obj if isinstance(obj, str) else f"line {line_no} is not an object"
                reason = "malformed_file" if isinstance(obj, str) else "invalid_record"
                rows.append({**base, "record_id": f"{source}#line/{line_no}", "kind": "invalid",
                             "reject_reason": reason, "reject_detail": detail})
                continue
            rid = str(obj.get("id") or f"@{line_no}")
            image = {**base, "record_id": f"{source}#image/{rid}", "kind": IMAGE,
                     "width": as_size(obj.get("width")), "height": as_size(obj.get("height"))}
            image_key_or_reject(obj.get("image"), image)
            if rid in seen:  # keep the records, rejected, under an id that stays unique
                rid = f"{rid}@{line_no}"
                image["record_id"] = f"{source}#image/{rid}"
                image["reject_reason"], image["reject_detail"] = "duplicate_record_id", "id repeats"
            seen.add(rid)
            rows.append(image)
            for row in _element_rows(obj, {**base, "image_key": image["image_key"]}, rid):
                if image.get("reject_reason") and not row.get("reject_reason"):
                    row["reject_reason"] = image["reject_reason"]
                    row["reject_detail"] = image["reject_detail"]
                rows.append(row)
    except BadFile as e:
        rows.append(file_reject(source, FORMAT, e))
    return to_source_records(rows)
