"""The prompt registry: one YAML file per conversation type in visit_assets/prompts/instructify/.

A file holds `id`, `version` (int: bump it whenever the text changes), `weight` (relative
sampling weight), `system`, `template` (with `{facts}` and one `{name}` per slot), `slots`
(randomised per conversation), `output` (the reply format), optionally `requires` (what an image's
remaining facts must offer for the type to be drawn: fact kinds, e.g. `[ocr]`, or `region`, an
object fact with its region; facts.features) and documentation fields
(`description`, `source`). Slots:

    slots:
      turns: {range: [2, 5]}                # an integer drawn uniformly from 2..5 inclusive
      focus: {choices: ["...", "..."]}      # one of the strings (a plain list means choices too)
    output:
      format: qa_blocks                     # "Question:" / "Answer:" blocks (parse.parse_qa)
      pairs: turns                          # how many pairs to keep: a slot name or an integer

`_profiles.yaml` names mixes of the types (`load_registry(profile=...)`): "llava" is
LLaVA-Instruct-158K's three types at its shares and nothing else; "instructify" every file's weight.

`_versions.json` beside the YAML files pins each prompt's version to a hash of its text;
`lock_problems` (run by the tests) fails when a text changed without a version bump.
Refresh it with `python -m visit_assets.lib.instructify.registry --lock`.
"""

from __future__ import annotations

import json
import random
import string
import sys
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from visit_assets.lib.ids import content_hash
from visit_assets.lib.instructify.facts import FEATURES

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "prompts" / "instructify"
LOCK_FILE = "_versions.json"
PROFILES_FILE = "_profiles.yaml"
DEFAULT_PROFILE = "instructify"
OUTPUT_FORMATS = ("qa_blocks",)
REQUIRED = ("id", "version", "weight", "system", "template")


class RegistryError(ValueError):
    """A prompt file is malformed (the message names the file)."""


@dataclass(frozen=True)
class Slot:
    name: str
    kind: str  # range | choices
    values: tuple  # (lo, hi) for range; the options for choices

    def sample(self, rng: random.Random) -> Any:
        if self.kind == "range":
            return rng.randint(self.values[0], self.values[1])
        return self.values[rng.randrange(len(self.values))]

    def spec(self) -> dict[str, list]:
        return {self.kind: list(self.values)}


@dataclass(frozen=True)
class PromptType:
    id: str
    version: int
    weight: float
    system: str
    template: str
    slots: tuple[Slot, ...] = ()
    output_format: str = "qa_blocks"
    pairs: int | str = 1  # a fixed count or the name of the slot that holds it
    requires: tuple[str, ...] = ()  # what the image's remaining facts must offer (facts.features)
    description: str = ""
    source: str = ""
    path: str = field(default="", compare=False)

    @property
    def text_hash(self) -> str:
        """Hash of everything that shapes the model's reply (not the weight or the docs)."""
        return content_hash(self.system, self.template, [s.name for s in self.slots], [s.spec() for s in self.slots],
                            self.output_format, self.pairs)

    def expected_pairs(self, slots: Mapping[str, Any]) -> int:
        return int(slots[self.pairs]) if isinstance(self.pairs, str) else int(self.pairs)

    def ref(self) -> dict[str, Any]:
        """What every conversation carries to name its prompt."""
        return {"prompt_id": self.id, "prompt_version": self.version, "prompt_hash": self.text_hash}


@dataclass(frozen=True)
class Registry:
    prompts: tuple[PromptType, ...]  # sorted by id: the sampling order never depends on file order
    profile: str = DEFAULT_PROFILE  # the named mix the weights came from (before per-type overrides)

    def get(self, prompt_id: str) -> PromptType:
        for p in self.prompts:
            if p.id == prompt_id:
                return p
        raise KeyError(prompt_id)

    @property
    def ids(self) -> list[str]:
        return [p.id for p in self.prompts]

    def weights(self) -> dict[str, float]:
        return {p.id: p.weight for p in self.prompts}

    def drawable(self, kinds: Collection[str] | None = None) -> list[PromptType]:
        """The types with weight whose `requires` the fact kinds meet (every weighted type without kinds)."""
        return [p for p in self.prompts if p.weight > 0 and (kinds is None or set(p.requires) <= set(kinds))]

    def probabilities(self) -> dict[str, float]:
        total = sum(p.weight for p in self.prompts)
        return {p.id: p.weight / total for p in self.prompts}

    def versions(self) -> dict[str, int]:
        return {p.id: p.version for p in self.prompts}

    def fingerprint(self) -> str:
        """Content version of the registry as sampled: ids, versions, texts, weights and requirements."""
        return content_hash([[p.id, p.version, p.text_hash, p.weight, list(p.requires)] for p in self.prompts])


def _slot(path: Path, name: str, spec: Any) -> Slot:
    if isinstance(spec, list):
        spec = {"choices": spec}
    if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in ("range", "choices"):
        raise RegistryError(f"{path}: slot {name!r} must be {{range: [lo, hi]}} or {{choices: [...]}}, got {spec!r}")
    kind, values = next(iter(spec.items()))
    if kind == "range":
        if (not isinstance(values, list) or len(values) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in values)
                or values[0] > values[1]):
            raise RegistryError(f"{path}: slot {name!r} range must be two integers lo <= hi, got {values!r}")
    elif not isinstance(values, list) or not values:
        raise RegistryError(f"{path}: slot {name!r} needs a non-empty list of choices")
    return Slot(name, kind, tuple(values))


def _placeholders(template: str) -> set[str]:
    return {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}


def load_prompt(path: Path) -> PromptType:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise RegistryError(f"{path}: {e}") from None
    if not isinstance(data, dict):
        raise RegistryError(f"{path}: a prompt file must be a mapping")
    missing = [k for k in REQUIRED if k not in data]
    if missing:
        raise RegistryError(f"{path}: missing {missing}")
    if not isinstance(data["version"], int) or isinstance(data["version"], bool) or data["version"] < 1:
        raise RegistryError(f"{path}: version must be an integer >= 1")
    if not isinstance(data["weight"], (int, float)) or data["weight"] < 0:
        raise RegistryError(f"{path}: weight must be a number >= 0")
    if data["id"] != path.stem:
        raise RegistryError(f"{path}: id {data['id']!r} must equal the file name")
    slots = tuple(_slot(path, n, s) for n, s in sorted((data.get("slots") or {}).items()))
    try:
        fields = _placeholders(data["template"]) | _placeholders(data["system"])
    except ValueError as e:
        raise RegistryError(f"{path}: bad template ({e}); write literal braces as {{{{ }}}}") from None
    names = {s.name for s in slots}
    if "facts" not in _placeholders(data["template"]):
        raise RegistryError(f"{path}: template needs a {{facts}} placeholder")
    unknown = fields - names - {"facts"}
    if unknown:
        raise RegistryError(f"{path}: placeholders {sorted(unknown)} are not slots")
    output = data.get("output") or {}
    fmt = output.get("format", "qa_blocks")
    if fmt not in OUTPUT_FORMATS:
        raise RegistryError(f"{path}: output format {fmt!r} not one of {OUTPUT_FORMATS}")
    pairs = output.get("pairs", 1)
    if isinstance(pairs, str):
        slot = next((s for s in slots if s.name == pairs), None)
        if slot is None or slot.kind != "range" or slot.values[0] < 1:
            raise RegistryError(f"{path}: output.pairs {pairs!r} must name a range slot with lo >= 1")
    elif not isinstance(pairs, int) or pairs < 1:
        raise RegistryError(f"{path}: output.pairs must be an int >= 1 or a slot name")
    requires = data.get("requires") or []
    if not isinstance(requires, list) or not set(requires) <= set(FEATURES):
        raise RegistryError(f"{path}: requires must be a list of fact kinds or {FEATURES[-1]!r} "
                            f"(one of {FEATURES}), got {requires!r}")
    return PromptType(
        id=data["id"], version=data["version"], weight=float(data["weight"]), system=data["system"].strip(),
        template=data["template"].strip(), slots=slots, output_format=fmt, pairs=pairs, requires=tuple(requires),
        description=str(data.get("description", "")).strip(), source=str(data.get("source", "")).strip(), path=str(path),
    )


def load_profiles(dir: str | Path | None = None) -> dict[str, dict[str, float] | None]:
    """{profile name: {prompt id: weight}, or None for "each file's own weight"} from `_profiles.yaml`."""
    path = (Path(dir) if dir is not None else DEFAULT_DIR) / PROFILES_FILE
    if not path.exists():
        return {DEFAULT_PROFILE: None}
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise RegistryError(f"{path}: a mapping of profile name -> {{description, weights}}")
    return {name: (dict(spec["weights"]) if spec.get("weights") else None) for name, spec in data.items()}


def load_registry(dir: str | Path | None = None, weights: Mapping[str, float] | None = None,
                  profile: str | None = None) -> Registry:
    """Every `*.yaml` in `dir` (default: the packaged prompts) but the `_` files. `profile` (default
    "instructify") sets the mix; `weights` then overrides per prompt id; weight 0 keeps a type
    loaded but never sampled."""
    folder = Path(dir) if dir is not None else DEFAULT_DIR
    files = sorted(f for f in folder.glob("*.yaml") if not f.name.startswith("_"))
    if not files:
        raise RegistryError(f"no prompt files (*.yaml) in {folder}")
    prompts: dict[str, PromptType] = {}
    for f in files:
        p = load_prompt(f)
        if p.id in prompts:
            raise RegistryError(f"{f}: duplicate prompt id {p.id!r}")
        prompts[p.id] = p
    profile = profile or DEFAULT_PROFILE
    profiles = load_profiles(folder)
    if profile not in profiles:
        raise RegistryError(f"unknown prompt profile {profile!r}; known: {sorted(profiles)}")
    mix = profiles[profile]
    if mix is not None:
        prompts = {pid: replace(p, weight=0.0) for pid, p in prompts.items()}
    for pid, w in {**(mix or {}), **(weights or {})}.items():
        if pid not in prompts:
            raise RegistryError(f"weight for unknown prompt {pid!r}; known: {sorted(prompts)}")
        if not isinstance(w, (int, float)) or w < 0:
            raise RegistryError(f"weight for {pid!r} must be a number >= 0, got {w!r}")
        prompts[pid] = replace(prompts[pid], weight=float(w))
    if sum(p.weight for p in prompts.values()) <= 0:
        raise RegistryError("all prompt weights are zero")
    return Registry(tuple(prompts[k] for k in sorted(prompts)), profile)


def sample_prompt(registry: Registry, rng: random.Random, kinds: Collection[str] | None = None
                  ) -> tuple[PromptType, dict[str, Any]]:
    """A prompt type drawn by weight, then its slots (in name order), all from `rng`. With `kinds`
    (what the image's remaining facts offer: facts.features), only the types whose `requires` they meet are drawn."""
    eligible = registry.drawable(kinds)
    if not eligible:
        raise ValueError(f"no prompt type with weight fits an image with fact kinds {sorted(kinds or [])}")
    total = sum(p.weight for p in eligible)
    r = rng.random() * total
    chosen = None
    for p in eligible:
        if p.weight <= 0:
            continue
        chosen = p
        r -= p.weight
        if r < 0:
            break
    assert chosen is not None
    return chosen, {s.name: s.sample(rng) for s in chosen.slots}


def format_facts(facts: Sequence[Any]) -> str:
    """Numbered facts, "[1] ...", continuation lines indented under their number."""
    lines = []
    for i, f in enumerate(facts, 1):
        text = f if isinstance(f, str) else f.text
        lines.append(f"[{i}] " + str(text).replace("\n", "\n    "))
    return "\n".join(lines)


def render(prompt: PromptType, facts: Sequence[Any], slots: Mapping[str, Any]) -> list[dict[str, str]]:
    """Chat messages (system + user) for one conversation request."""
    values = {**slots, "facts": format_facts(facts)}
    return [
        {"role": "system", "content": prompt.system.format_map(values)},
        {"role": "user", "content": prompt.template.format_map(values)},
    ]


# ---------------------------------------------------------------------------------------------
# Version lock: a text change must come with a version bump
# ---------------------------------------------------------------------------------------------


def lock_entries(registry: Registry) -> dict[str, dict[str, Any]]:
    return {p.id: {"version": p.version, "text_hash": p.text_hash} for p in registry.prompts}


def lock_problems(registry: Registry, lock_path: str | Path | None = None) -> list[str]:
    path = Path(lock_path) if lock_path else DEFAULT_DIR / LOCK_FILE
    lock = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    problems = []
    for pid, entry in lock_entries(registry).items():
        old = lock.get(pid)
        if old is None:
            problems.append(f"{pid}: not in {path.name}; run the --lock command")
        elif old["text_hash"] != entry["text_hash"] and old["version"] == entry["version"]:
            problems.append(f"{pid}: text changed but version is still {entry['version']}; bump it, then run --lock")
        elif old != entry:
            problems.append(f"{pid}: {path.name} is stale ({old} != {entry}); run the --lock command")
    for pid in sorted(set(lock) - set(registry.ids)):
        problems.append(f"{pid}: in {path.name} but no prompt file")
    return problems


def write_lock(registry: Registry, lock_path: str | Path | None = None) -> Path:
    path = Path(lock_path) if lock_path else DEFAULT_DIR / LOCK_FILE
    path.write_text(json.dumps(lock_entries(registry), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


if __name__ == "__main__":  # python -m visit_assets.lib.instructify.registry --lock
    reg = load_registry()
    if "--lock" in sys.argv[1:]:
        print(f"wrote {write_lock(reg)}")
    else:
        for prob in lock_problems(reg) or ["lock up to date"]:
            print(prob)
