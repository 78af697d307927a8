"""The seed instructions: a user-editable YAML file, validated on load, versioned by content.

File layout (see visit_assets/data/seed_instructions.yaml):

    categories: {slug: description, ...}
    seeds:
      - {id: slug, category: slug, text: "Write ..."}

`seeds_version()` is the data version of the file: a content hash of the parsed categories and
seeds, so comments and formatting do not change it and any edit to a seed does.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from visit_assets.lib.ids import content_hash

DATA_DIR = Path(__file__).resolve().parents[2] / "data"
DEFAULT_SEEDS_PATH = DATA_DIR / "seed_instructions.yaml"
SEEDS_ENV = "VISIT_SEEDS_FILE"  # the user's own seeds file, instead of the shipped one


def default_path() -> Path:
    return Path(os.environ.get(SEEDS_ENV, "").strip() or DEFAULT_SEEDS_PATH)

SLUG = re.compile(r"^[a-z0-9]+(?:[-_][a-z0-9]+)*$")
MIN_SEED_CHARS = 15  # shorter than this is not an instruction
MAX_SEED_CHARS = 400


class SeedFileError(ValueError):
    """The seeds file is malformed; the message lists every problem found."""


@dataclass(frozen=True)
class Seed:
    id: str
    category: str
    text: str


def _problems_and_seeds(raw: Any) -> tuple[list[str], dict[str, str], list[Seed]]:
    problems: list[str] = []
    if not isinstance(raw, dict):
        return ["the file must be a mapping with `categories` and `seeds`"], {}, []
    cats_raw = raw.get("categories")
    categories: dict[str, str] = {}
    if not isinstance(cats_raw, dict) or not cats_raw:
        problems.append("`categories` must be a non-empty mapping of slug -> description")
    else:
        for name, desc in cats_raw.items():
            if not isinstance(name, str) or not SLUG.match(name):
                problems.append(f"category {name!r} is not a slug")
                continue
            categories[name] = str(desc or "").strip()
    seeds_raw = raw.get("seeds")
    if not isinstance(seeds_raw, list) or not seeds_raw:
        problems.append("`seeds` must be a non-empty list")
        return problems, categories, []
    seeds: list[Seed] = []
    seen_ids: dict[str, int] = {}
    seen_texts: dict[str, str] = {}
    for i, item in enumerate(seeds_raw):
        where = f"seeds[{i}]"
        if not isinstance(item, dict):
            problems.append(f"{where}: must be a mapping with id, category, text")
            continue
        extra = sorted(set(item) - {"id", "category", "text"})
        if extra:
            problems.append(f"{where}: unknown keys {extra}")
        sid = item.get("id")
        cat = item.get("category")
        text = item.get("text")
        if not isinstance(sid, str) or not SLUG.match(sid):
            problems.append(f"{where}: id {sid!r} is not a slug (lower-case letters, digits, dashes)")
            continue
        where = f"seed {sid!r}"
        if sid in seen_ids:
            problems.append(f"{where}: duplicate id (also seeds[{seen_ids[sid]}])")
        seen_ids.setdefault(sid, i)
        if cat not in categories:
            problems.append(f"{where}: unknown category {cat!r} (declare it under `categories`)")
        if not isinstance(text, str) or not text.strip():
            problems.append(f"{where}: empty text")
            continue
        text = " ".join(text.split())
        if not MIN_SEED_CHARS <= len(text) <= MAX_SEED_CHARS:
            problems.append(f"{where}: text must be {MIN_SEED_CHARS}-{MAX_SEED_CHARS} characters, got {len(text)}")
        key = text.lower()
        if key in seen_texts:
            problems.append(f"{where}: same text as seed {seen_texts[key]!r}")
        seen_texts.setdefault(key, sid)
        seeds.append(Seed(sid, str(cat), text))
    return problems, categories, seeds


def _read(path: str | Path | None) -> Any:
    p = Path(path) if path is not None else default_path()
    try:
        return yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise SeedFileError(f"{p}: not valid YAML: {exc}") from exc


def load_seed_file(path: str | Path | None = None) -> tuple[dict[str, str], list[Seed]]:
    """(categories, seeds) of a validated seeds file; raises SeedFileError listing every problem."""
    problems, categories, seeds = _problems_and_seeds(_read(path))
    if problems:
        where = Path(path) if path is not None else default_path()
        raise SeedFileError(f"{where}: {len(problems)} problem(s):\n- " + "\n- ".join(problems))
    return categories, seeds


def load_seeds(path: str | Path | None = None) -> list[Seed]:
    """The validated seeds, in file order (when `path` is None: VISIT_SEEDS_FILE, else the shipped file)."""
    return load_seed_file(path)[1]


def seeds_version(path: str | Path | None = None) -> str:
    """Data version of a seeds file: content hash of its validated categories and seeds."""
    categories, seeds = load_seed_file(path)
    return content_hash("mminstruct.seeds", sorted(categories.items()), [[s.id, s.category, s.text] for s in seeds])


def seeds_by_id(seeds: Sequence[Seed]) -> dict[str, Seed]:
    return {s.id: s for s in seeds}
