"""LLaVA JSON export: schema check, versioned folders that are never overwritten, checksums.

    items = to_llava(conversations)
    problems = validate_llava(items)          # [] when the export is well-formed
    manifest = write_export(items, root, export_summary(conversations))
    # -> root/<content version>/llava.json + manifest.json

The folder name is the content version: a hash of the exact llava.json bytes and the manifest
fields, so equal content always lands in the same folder and different content in a new one.
Writing into an existing folder is allowed only when the content is identical (an idempotent
re-run); anything else raises `ExportExistsError`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from visit_assets.lib.ids import content_hash, file_sha256
from visit_assets.lib.models.identity import NOT_REAL

IMAGE_TOKEN = "<image>"
DATA_FILE = "llava.json"
MANIFEST_FILE = "manifest.json"
EXPORT_FORMAT = "llava-v1"


class ExportExistsError(FileExistsError):
    """An export folder with this version exists and holds different content."""


class ExportInvalidError(ValueError):
    """The items break the LLaVA schema (the message lists the problems)."""


def to_llava(conversations: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One LLaVA item per conversation: `id`, `image` (the image key), `conversations`."""
    return [
        {"id": c["conversation_id"], "image": c["image_key"],
         "conversations": [{"from": t["from"], "value": t["value"]} for t in c["turns"]]}
        for c in conversations
    ]


def invalid_items_report(items: Sequence[Mapping[str, Any]], conversations: Sequence[Mapping[str, Any]]) -> str | None:
    """None when the items are valid LLaVA; else what a user needs to fix it: how many items are
    invalid, which stage (recipe, and the file of imported ones) made them, the first problems."""
    problems = validate_llava(items)
    if not problems:
        return None
    bad = [(c, validate_llava([item])) for item, c in zip(items, conversations, strict=True)]
    bad = [(c, p) for c, p in bad if p]
    origins = Counter(f"{c.get('recipe') or 'unknown recipe'}"
                      + (f" ({c['source']})" if c.get("source") else "") for c, _ in bad)
    made_by = ", ".join(f"{origin}: {n}" for origin, n in origins.most_common())
    first = "; ".join(f"{c.get('conversation_id')}: {p[0].split(': ', 1)[-1]}" for c, p in bad[:5])
    return (f"{len(bad) or len(problems)} of {len(items)} items are not valid LLaVA, "
            f"made by {made_by or 'the set as a whole'}. First problems: {first or '; '.join(problems[:5])}")


def validate_llava(items: Sequence[Any]) -> list[str]:
    """Schema problems, as readable strings ([] = valid)."""
    problems: list[str] = []
    seen: Counter[str] = Counter()
    if not isinstance(items, (list, tuple)):
        return ["export must be a JSON list"]
    for n, item in enumerate(items):
        where = f"item {n}"
        if not isinstance(item, dict):
            problems.append(f"{where}: not an object")
            continue
        extra = set(item) - {"id", "image", "conversations"}
        if extra:
            problems.append(f"{where}: unexpected keys {sorted(extra)}")
        iid = item.get("id")
        if not isinstance(iid, str) or not iid:
            problems.append(f"{where}: id must be a non-empty string")
        else:
            where = f"item {n} ({iid})"
            seen[iid] += 1
        if not isinstance(item.get("image"), str) or not item.get("image"):
            problems.append(f"{where}: image must be a non-empty string")
        turns = item.get("conversations")
        if not isinstance(turns, list) or not turns:
            problems.append(f"{where}: conversations must be a non-empty list")
            continue
        if len(turns) % 2:
            problems.append(f"{where}: odd number of turns ({len(turns)}); must end with a gpt turn")
        for k, t in enumerate(turns):
            if not isinstance(t, dict) or set(t) != {"from", "value"}:
                problems.append(f"{where} turn {k}: must be {{from, value}}")
                continue
            want = "human" if k % 2 == 0 else "gpt"
            if t["from"] != want:
                problems.append(f"{where} turn {k}: from {t['from']!r}, expected {want!r} "
                                "(human/gpt alternate, human first)")
            value = t["value"]
            if not isinstance(value, str) or not value.strip():
                problems.append(f"{where} turn {k}: empty value")
                continue
            count = value.count(IMAGE_TOKEN)
            if k == 0:
                if count != 1:
                    problems.append(f"{where} turn 0: {IMAGE_TOKEN} must occur exactly once, found {count}")
                elif not value.replace(IMAGE_TOKEN, "").strip():
                    problems.append(f"{where} turn 0: no text besides {IMAGE_TOKEN}")
            elif count:
                problems.append(f"{where} turn {k}: {IMAGE_TOKEN} only allowed in the first human turn")
    problems.extend(f"duplicate id {i} ({c} items)" for i, c in sorted(seen.items()) if c > 1)
    return problems


def export_summary(conversations: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Manifest fields describing what produced the conversations (models, prompt versions, seeds)."""
    prompts = sorted({(c.get("prompt_id"), c.get("prompt_version"), c.get("prompt_hash")) for c in conversations
                      if c.get("prompt_id")})
    return {
        "recipe": sorted({c.get("recipe") or "" for c in conversations}),
        "models": sorted({c["model"] for c in conversations if c.get("model")}),
        "verifier_models": sorted({m for c in conversations for m in c.get("verifier_models") or []}),
        "prompt_versions": [{"id": i, "version": v, "hash": h} for i, v, h in prompts],
        "prompt_mixes": [{"profile": p, "weights": json.loads(w)} for p, w in sorted(
            {(c["prompt_profile"], c.get("prompt_weights") or "{}") for c in conversations if c.get("prompt_profile")})],
        "verify_prompt_versions": sorted({c.get("verify_prompt_version") for c in conversations
                                          if c.get("verify_prompt_version")}),
        "seeds": sorted({c["seed"] for c in conversations if c.get("seed") is not None}),
        "imported_sources": sorted({c["source"] for c in conversations
                                    if c.get("recipe") == "imported" and c.get("source")}),
        "not_real_models": not_real_models(conversations),
    }


# The weights markers of a label ("name@<first 12 characters of the weights>") that are not real
# weights. Read from identity.NOT_REAL, the single list: a marker added there (random-init,
# unconfigured, no-model, stand-in, ...) is reported here with no change to this module.
_NOT_REAL_MARKS = frozenset(w[:12] for w in NOT_REAL)


def _label_weights(label: Any) -> str | None:
    """The weights part of a model label ("name@weights12", optionally followed by " (note)")."""
    if not isinstance(label, str):
        return None
    head = label.split(" (", 1)[0].strip()
    return head.rsplit("@", 1)[1] if "@" in head else None


def not_real_models(conversations: Sequence[Mapping[str, Any]]) -> list[str]:
    """Labels of the models named on these rows whose weights are not real (identity.NOT_REAL):
    the generating model (`model`, or `llm_model` + `llm_weights`), the verifiers and the scorers
    (`<score>_model`). Their text or scores are not data; the manifest says so instead of hiding it."""
    found: set[str] = set()
    for c in conversations:
        labels = [c.get("model"), *(c.get("verifier_models") or [])]
        labels += [v for k, v in c.items() if k.endswith("_model") and k != "llm_model"]
        if c.get("llm_model") and c.get("llm_weights"):
            labels.append(f"{c['llm_model']}@{str(c['llm_weights'])[:12]}")
        found |= {label.split(" (", 1)[0].strip() for label in labels if _label_weights(label) in _NOT_REAL_MARKS}
    return sorted(found)


def _data_bytes(items: Sequence[Mapping[str, Any]]) -> bytes:
    return (json.dumps(list(items), ensure_ascii=False, indent=1) + "\n").encode("utf-8")


def _counts(items: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    turns = sum(len(i["conversations"]) for i in items)
    return {"conversations": len(items), "images": len({i["image"] for i in items}), "turns": turns,
            "qa_pairs": turns // 2}


def export_version(items: Sequence[Mapping[str, Any]], manifest_fields: Mapping[str, Any] | None = None) -> str:
    return content_hash(EXPORT_FORMAT, content_hash(_data_bytes(items).decode("utf-8"), length=64),
                        dict(manifest_fields or {}))


def write_export(items: Sequence[Mapping[str, Any]], folder: str | Path, manifest_fields: Mapping[str, Any] | None = None,
                 extra_files: Mapping[str, bytes] | None = None) -> dict[str, Any]:
    """Write `folder/<version>/{llava.json, manifest.json}` and return the manifest.

    Refuses invalid items (`ExportInvalidError`) and an existing version folder whose files differ
    (`ExportExistsError`). The folder appears atomically (written aside, then renamed). `extra_files`
    (name -> bytes, e.g. a Parquet copy of the conversations) are written beside it and checksummed
    in the manifest, so they are part of the version too.
    """
    problems = validate_llava(items)
    if problems:
        raise ExportInvalidError(f"{len(problems)} problem(s): " + "; ".join(problems[:10]))
    fields = dict(manifest_fields or {})
    reserved = {"format", "version", "counts", "files"} & set(fields)
    if reserved:
        raise ValueError(f"manifest_fields may not set {sorted(reserved)}")
    data = _data_bytes(items)
    version = export_version(items, fields)
    if extra_files:  # their bytes are part of the version: another writer's bytes make a new folder
        version = content_hash(version, {name: _sha256(blob) for name, blob in sorted(extra_files.items())})
    root = Path(folder)
    target = root / version
    manifest = {
        "format": EXPORT_FORMAT,
        "version": version,
        "counts": _counts(items),
        "files": {name: {"sha256": _sha256(blob), "bytes": len(blob)}
                  for name, blob in {DATA_FILE: data, **(extra_files or {})}.items()},
        **fields,
    }
    manifest_bytes = (json.dumps(manifest, ensure_ascii=False, indent=2, sort_keys=True, default=str) + "\n").encode("utf-8")
    files = {DATA_FILE: data, **(extra_files or {}), MANIFEST_FILE: manifest_bytes}
    if target.exists():
        return _existing(target, files)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{version}.", dir=root))
    try:
        for name, blob in files.items():
            (tmp / name).write_bytes(blob)
        for f in files:
            with open(tmp / f, "rb") as fh:
                os.fsync(fh.fileno())
        try:
            os.rename(tmp, target)
        except OSError:  # another writer won the race: same version, so it must hold the same bytes
            if target.exists():
                return _existing(target, files)
            raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return json.loads(manifest_bytes)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _existing(target: Path, files: Mapping[str, bytes]) -> dict[str, Any]:
    names = sorted(p.name for p in target.iterdir())
    same = names == sorted(files) and all(file_sha256(target / n) == _sha256(b) for n, b in files.items())
    if not same:
        raise ExportExistsError(f"{target} exists with different content; an export version is never overwritten")
    return json.loads(files[MANIFEST_FILE])


def read_export(path: str | Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(items, manifest) of an export folder, after checking the checksums and the schema."""
    path = Path(path)
    manifest = json.loads((path / MANIFEST_FILE).read_text(encoding="utf-8"))
    for name, meta in manifest["files"].items():
        actual = file_sha256(path / name)
        if actual != meta["sha256"]:
            raise ValueError(f"{path / name}: sha256 {actual} != manifest {meta['sha256']}")
    items = json.loads((path / DATA_FILE).read_text(encoding="utf-8"))
    problems = validate_llava(items)
    if problems:
        raise ExportInvalidError("; ".join(problems[:10]))
    return items, manifest


__all__ = [
    "ExportExistsError", "ExportInvalidError", "export_summary", "export_version", "not_real_models", "read_export",
    "to_llava", "validate_llava", "write_export",
]
