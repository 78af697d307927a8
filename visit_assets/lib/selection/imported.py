"""Already-made VisIT conversations, imported to be scored and re-selected without regenerating.

A file is LLaVA JSON (a list of {id, image, conversations: [{from, value}, ...]}), JSONL of the
same items, or Parquet/JSONL with flat rows {image, instruction, answer}. Any item may carry raw
scores in `clip_score`, `length_score`, `reward_score`, `judge_score`; each is used as given and
named by `<score>_model` (or recorded as made by an unnamed model of that file): an imported
score is never passed off as one this product computed. Every item becomes a row or a reject with
its reason; the conversation id is a content hash of dataset, image and turns.

Every row is a valid LLaVA item on the way in, so whatever is selected can be exported: an item
without `<image>` gets it as LLaVA's own data writes it ("<image>\n" before the first question),
one with it once in the first human turn keeps it, and one with it anywhere else is a reject;
then the export's own validation (`validate_llava`) is the last gate.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import polars as pl

from ..ids import content_hash, image_id
from ..instructify.export import IMAGE_TOKEN, validate_llava
from ..metadata.paths import UnsafePath, normalise_image_key

RECIPE = "imported"
SCORES = ("clip", "length", "reward", "judge")
TURNS = pl.List(pl.Struct({"from": pl.String, "value": pl.String}))


def read_items(path: Path) -> list[dict[str, Any]]:
    """The file's items; ValueError with the reason when the file cannot be read as items."""
    try:
        if path.suffix == ".parquet":
            return pl.read_parquet(path).to_dicts()
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".jsonl":
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        data = json.loads(text)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, pl.exceptions.PolarsError) as e:
        raise ValueError(f"{type(e).__name__}: {e}") from None
    if not isinstance(data, list):
        raise ValueError("a JSON file of conversations must hold a list of items")
    return data


def _turns(item: dict[str, Any]) -> list[dict[str, str]] | str:
    """LLaVA turns, or the reason they are unusable."""
    if item.get("conversations") is not None:
        raw = item["conversations"]
        if not isinstance(raw, list) or not raw:
            return "no_turns"
        turns = []
        for t in raw:
            if not isinstance(t, dict) or t.get("from") not in ("human", "gpt") or not isinstance(t.get("value"), str):
                return "bad_turn"
            turns.append({"from": t["from"], "value": t["value"]})
    elif isinstance(item.get("instruction"), str) and isinstance(item.get("answer"), str):
        turns = [{"from": "human", "value": item["instruction"]}, {"from": "gpt", "value": item["answer"]}]
    else:
        return "no_turns"
    if turns[0]["from"] != "human" or any(a["from"] == b["from"] for a, b in zip(turns, turns[1:], strict=False)):
        return "turns_not_alternating"
    if not any(t["from"] == "gpt" and t["value"].strip() for t in turns):
        return "no_answer"
    return _with_image_token(turns)


def _with_image_token(turns: list[dict[str, str]]) -> list[dict[str, str]] | str:
    """The turns with `<image>` once, in the first human turn (added when absent), or the reason not."""
    counts = [t["value"].count(IMAGE_TOKEN) for t in turns]
    if sum(counts) == 0:
        return [{"from": "human", "value": f"{IMAGE_TOKEN}\n{turns[0]['value']}"}, *turns[1:]]
    if counts[0] == 1 and sum(counts) == 1:
        return turns
    return "image_token_misplaced"


def _scores(item: dict[str, Any], source: str) -> dict[str, Any] | str:
    out: dict[str, Any] = {}
    for name in SCORES:
        value = item.get(f"{name}_score")
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not math.isfinite(value)):
            return "bad_score"
        model = item.get(f"{name}_model")
        out[f"imported_{name}"] = None if value is None else float(value)
        out[f"imported_{name}_model"] = None if value is None else str(model or f"unnamed model (imported from {source})")
    return out


def normalise(item: Any, source: str, dataset: str) -> tuple[dict[str, Any] | None, str | None]:
    """(row, None) or (None, reject reason) for one imported item."""
    if not isinstance(item, dict):
        return None, "not_an_object"
    if not isinstance(item.get("image"), str):
        return None, "no_image"
    try:
        key = normalise_image_key(item["image"])
    except UnsafePath:
        return None, "unsafe_image_path"
    turns = _turns(item)
    if isinstance(turns, str):
        return None, turns
    if validate_llava([{"id": "item", "image": key, "conversations": turns}]):
        return None, "invalid_llava_item"  # e.g. ends with a question, or an empty turn: the export would refuse it
    scores = _scores(item, source)
    if isinstance(scores, str):
        return None, scores
    return {
        "conversation_id": content_hash(RECIPE, dataset, key, turns),
        "image_id": image_id(dataset, key), "image_key": key, "recipe": RECIPE,
        "source": source, "source_id": None if item.get("id") is None else str(item["id"]), "turns": turns, **scores,
    }, None


def load_imported(files: list[tuple[Path, str]], dataset: str, known_image_ids: set[str],
                  qc_reasons: dict[str, str] | None = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """All items of the files as (rows, rejects). `files` holds (path, name shown in lineage);
    rows whose image is not a grouped image of the dataset are rejected (nothing to embed, cluster
    or score against): `image_failed_metadata_qc` when `qc_reasons` (image id -> its metadata_rejects
    reasons) has the image (the reasons go in `metadata_qc`), else `image_not_in_dataset`."""
    qc_reasons = qc_reasons or {}
    rows: list[dict[str, Any]] = []
    rejects: list[dict[str, Any]] = []
    seen: set[str] = set()
    for path, source in files:
        try:
            items = read_items(path)
        except ValueError as e:
            rejects.append({"source": source, "item_index": None, "reason": "unreadable_file", "detail": str(e)[:500],
                            "metadata_qc": None})
            continue
        for index, item in enumerate(items):
            row, reason = normalise(item, source, dataset)
            why = None
            if row is not None and row["image_id"] not in known_image_ids:
                why = qc_reasons.get(row["image_id"])
                row, reason = None, "image_failed_metadata_qc" if why else "image_not_in_dataset"
            elif row is not None and row["conversation_id"] in seen:
                row, reason = None, "duplicate"
            if row is None:
                detail = json.dumps(item, default=str)[:500]
                rejects.append({"source": source, "item_index": index, "reason": reason, "detail": detail,
                                "metadata_qc": why})
            else:
                seen.add(row["conversation_id"])
                rows.append(row)
    return rows, rejects


def rows_schema() -> dict[str, pl.DataType | pl.datatypes.DataTypeClass]:
    schema: dict[str, pl.DataType | pl.datatypes.DataTypeClass] = {
        "conversation_id": pl.String, "image_id": pl.String, "image_key": pl.String, "recipe": pl.String,
        "source": pl.String, "source_id": pl.String, "turns": TURNS,
    }
    for name in SCORES:
        schema[f"imported_{name}"] = pl.Float64
        schema[f"imported_{name}_model"] = pl.String
    return schema


# metadata_qc: why the image has no grouped record (its metadata_rejects reasons), for image_failed_metadata_qc
REJECTS_SCHEMA = {"source": pl.String, "item_index": pl.Int64, "reason": pl.String, "detail": pl.String,
                  "metadata_qc": pl.String}
