"""LLaVA conversation JSON: `[{"id", "image", "conversations": [{"from", "value"}, ...]}]`.

Each entry gives one image record and one QA record per human -> gpt turn pair; the `<image>`
token is stripped from questions (it marks where the image goes, it is not text).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from ..records import IMAGE, QA, to_source_records
from .common import BadFile, file_reject, image_key_or_reject, nonempty_str, read_json

FORMAT = "llava"


def looks_like_llava(head: bytes) -> bool:
    text = head.lstrip()
    return text.startswith(b"[") and b'"conversations"' in head


def _qa_rows(entry: dict, base: dict, entry_id: str) -> list[dict]:
    turns = entry.get("conversations")
    if not isinstance(turns, list):
        return [{**base, "record_id": f"{base['source']}#qa/{entry_id}", "kind": QA,
                 "reject_reason": "invalid_record", "reject_detail": "conversations is not a list"}]
    rows = []
    for i in range(0, len(turns), 2):
        pair = turns[i : i + 2]
        row = {**base, "record_id": f"{base['source']}#qa/{entry_id}/{i // 2}", "kind": QA}
        ok = (
            len(pair) == 2
            and all(isinstance(t, dict) and nonempty_str(t.get("value")) for t in pair)
            and pair[0].get("from") == "human"
            and pair[1].get("from") == "gpt"
        )
        if ok:
            row["text"] = pair[0]["value"].replace("<image>", "").strip()
            row["answer"] = pair[1]["value"].strip()
        else:
            row["reject_reason"] = "invalid_record"
            row["reject_detail"] = "turn pair is not a human question followed by a gpt answer"
        rows.append(row)
    return rows


def load_llava(path: Path, source: str) -> pl.DataFrame:
    base = {"source": source, "source_format": FORMAT}
    try:
        data = read_json(path)
        if not isinstance(data, list):
            raise BadFile("unknown_format", "LLaVA JSON must be a list of conversation entries")
    except BadFile as e:
        return to_source_records([file_reject(source, FORMAT, e)])
    rows: list[dict] = []
    seen: set[str] = set()
    for index, entry in enumerate(data):
        if not isinstance(entry, dict):
            rows.append({**base, "record_id": f"{source}#image/@{index}", "kind": IMAGE,
                         "reject_reason": "invalid_record", "reject_detail": "entry is not an object"})
            continue
        entry_id = str(entry.get("id", f"@{index}"))
        image = {**base, "record_id": f"{source}#image/{entry_id}", "kind": IMAGE}
        image_key_or_reject(entry.get("image"), image)
        if entry_id in seen:  # keep the records, rejected, under an id that stays unique
            entry_id = f"{entry_id}@{index}"
            image["record_id"] = f"{source}#image/{entry_id}"
            image["reject_reason"], image["reject_detail"] = "duplicate_record_id", "id repeats"
        seen.add(entry_id)
        rows.append(image)
        qa_base = {**base, "image_key": image.get("image_key")}
        for row in _qa_rows(entry, qa_base, entry_id):
            if image.get("reject_reason") and not row.get("reject_reason"):
                row["reject_reason"], row["reject_detail"] = image["reject_reason"], image["reject_detail"]
            rows.append(row)
    return to_source_records(rows)
