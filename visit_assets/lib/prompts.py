"""The product's LLM prompts: versioned, user-editable YAML files under visit_assets/prompts/<family>/.

One loader for every family (one folder each):

    prompts/mminstruct/          MM-Instruct generation (visit_assets/lib/mminstruct)
    prompts/instructify_checks/  Instructify's verification and QA-to-declarative rewrite
    prompts/selection/           InstructionGPT-4 judge score and the pairwise evaluation judges
    prompts/instructify/         Instructify's generation prompt types: NOT read here; they have
                                 their own registry (weights, slots, a version lock), see
                                 visit_assets/lib/instructify/registry.py

Each file holds `id`, `version` (positive int, bumped whenever the text changes), `system`,
`template` and the `variables` the template uses (`{name}` fields, str.format syntax; write
`{{`/`}}` for literal braces). Prompts that show in-context examples also hold `example_template`
(fields: `{n}`, the 1-based position, plus `example_variables`) and `example_separator`; the
rendered examples fill `{examples}`. `system` and `template` are stripped of surrounding
whitespace when loaded.

Rendering is strict: a missing or unexpected variable raises, so a template edit that forgets a
field fails at load time, not in the middle of a run. Every row an LLM stage writes should record
`prompt.lineage()` (id, version and a fingerprint of the text), or at least the id and version.

Editing a file changes the code version of the stages that render it (their `code_version(...,
files=...)` lists the file), so Dagster marks their outputs stale; bump `version` with the text.
"""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from visit_assets.lib.ids import content_hash
from visit_assets.lib.llm.types import ImageInput, LLMRequest, SamplingParams

PROMPTS_ROOT = Path(__file__).resolve().parents[1] / "prompts"

_KEYS = {"id", "version", "description", "variables", "system", "template", "example_variables", "example_template",
         "example_separator"}


class PromptError(ValueError):
    """A prompt file is malformed or a render got the wrong variables."""


def prompt_dir(family: str) -> Path:
    """The folder of one prompt family, e.g. prompt_dir("selection")."""
    return PROMPTS_ROOT / family


def template_fields(template: str) -> set[str]:
    """Names of the `{field}`s in a str.format template; only plain names are allowed."""
    names: set[str] = set()
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise PromptError(f"bad template: {exc}") from exc
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if not name.isidentifier() or spec or conversion:
            raise PromptError(f"template field {{{name}}} must be a plain name "
                              "(no index, attribute, format spec or conversion)")
        names.add(name)
    return names


@dataclass(frozen=True)
class PromptTemplate:
    name: str  # file stem, e.g. "answer_generation"
    id: str
    version: int
    system: str
    template: str
    variables: tuple[str, ...]
    description: str = ""
    example_template: str | None = None
    example_variables: tuple[str, ...] = ()
    example_separator: str = "\n"
    path: str = field(default="", compare=False)

    @property
    def key(self) -> str:
        return f"{self.id}@v{self.version}"

    @property
    def fingerprint(self) -> str:
        """Content hash of everything that reaches the model (the version should follow it)."""
        return content_hash(self.id, self.system, self.template, self.example_template, self.example_separator)

    def lineage(self) -> dict[str, Any]:
        return {"prompt_id": self.id, "prompt_version": self.version, "prompt_fingerprint": self.fingerprint}

    def render_examples(self, examples: Sequence[Mapping[str, Any]]) -> str:
        if self.example_template is None:
            raise PromptError(f"{self.key} takes no examples")
        out = []
        for n, ex in enumerate(examples, start=1):
            values = {k: ex[k] for k in self.example_variables if k in ex}
            missing = [k for k in self.example_variables if k not in values]
            if missing:
                raise PromptError(f"{self.key}: example {n} lacks {missing}")
            out.append(self.example_template.format(n=n, **{k: str(v).strip() for k, v in values.items()}))
        return self.example_separator.join(out)

    def render_values(self, values: Mapping[str, Any], *, strip: bool = True) -> str:
        """The user message from a mapping of the variables.

        strip=True (what `render` does) strips every value of surrounding whitespace; strip=False
        inserts the values exactly as given (for prompts whose variables carry meaningful
        whitespace, e.g. an optional context block ending in a blank line). `examples` may be a
        list of mappings (rendered here) or an already rendered string.
        """
        missing = [v for v in self.variables if v not in values]
        extra = sorted(set(values) - set(self.variables))
        if missing or extra:
            raise PromptError(f"{self.key}: missing variables {missing}, unexpected {extra}")
        if "examples" in values and not isinstance(values["examples"], str):
            values = {**values, "examples": self.render_examples(values["examples"])}
        if strip:
            values = {k: str(v).strip() for k, v in values.items()}
        return self.template.format(**values)

    def render(self, **values: Any) -> str:
        """The user message, every value stripped. `examples` may be given as a list of mappings."""
        return self.render_values(values)

    def messages(self, values: Mapping[str, Any], *, strip: bool = True) -> list[dict[str, str]]:
        """[system, user] chat messages (no system message when the prompt has none)."""
        user = self.render_values(values, strip=strip)
        return ([{"role": "system", "content": self.system}] if self.system else []) + [{"role": "user", "content": user}]

    def request(self, *, params: SamplingParams | None = None, tag: Any = None, images: Sequence[ImageInput] = (),
                **values: Any) -> LLMRequest:
        """The chat request; `images` go with the user message (for a vision-language model)."""
        return LLMRequest.chat(self.render(**values), system=self.system or None, params=params, tag=tag,
                               images=images)


def parse_prompt(raw: Any, name: str, path: str = "", *, id_prefix: str | None = None) -> PromptTemplate:
    """A PromptTemplate from a parsed YAML mapping. With `id_prefix`, the id must be
    `id_prefix + name` (the file name); without, any non-empty string id is accepted."""
    where = path or name
    if not isinstance(raw, dict):
        raise PromptError(f"{where}: must be a mapping")
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise PromptError(f"{where}: unknown keys {unknown}")
    for key in ("id", "version", "template", "variables"):
        if key not in raw:
            raise PromptError(f"{where}: missing `{key}`")
    pid = raw["id"]
    if id_prefix is not None and pid != id_prefix + name:
        raise PromptError(f"{where}: id must be {id_prefix + name!r} (the file name), got {pid!r}")
    if not isinstance(pid, str) or not pid.strip():
        raise PromptError(f"{where}: id must be a non-empty string")
    version = raw["version"]
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise PromptError(f"{where}: version must be a positive integer")
    template = str(raw["template"]).strip()
    system = str(raw.get("system") or "").strip()
    variables = tuple(raw["variables"] or ())
    used = template_fields(template)
    if used != set(variables):
        raise PromptError(f"{where}: template uses {sorted(used)} but declares {sorted(variables)}")
    if template_fields(system):
        raise PromptError(f"{where}: the system message must not contain {{fields}}")
    ex_template = raw.get("example_template")
    ex_vars = tuple(raw.get("example_variables") or ())
    if ex_template is not None:
        ex_template = str(ex_template).strip()
        ex_used = template_fields(ex_template)
        if ex_used != set(ex_vars) | {"n"} and ex_used != set(ex_vars):
            raise PromptError(f"{where}: example_template uses {sorted(ex_used)} but declares {sorted(ex_vars)} (+ n)")
        if "examples" not in variables:
            raise PromptError(f"{where}: example_template given but the template has no {{examples}}")
    return PromptTemplate(
        name=name,
        id=pid,
        version=version,
        system=system,
        template=template,
        variables=variables,
        description=str(raw.get("description") or ""),
        example_template=ex_template,
        example_variables=ex_vars,
        example_separator=str(raw.get("example_separator", "\n")),
        path=path,
    )


def load_prompt(name: str, directory: str | Path, *, id_prefix: str | None = None) -> PromptTemplate:
    """The prompt `<directory>/<name>.yaml` (directory: a family folder, see `prompt_dir`)."""
    path = Path(directory) / f"{name}.yaml"
    if not path.is_file():
        raise PromptError(f"no prompt file {path}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise PromptError(f"{path}: not valid YAML: {exc}") from exc
    return parse_prompt(raw, name, str(path), id_prefix=id_prefix)


def load_prompts(directory: str | Path, *, required: Sequence[str] = (),
                 id_prefix: str | None = None) -> dict[str, PromptTemplate]:
    """Every prompt of a family folder by name; the `required` names must be present."""
    d = Path(directory)
    prompts = {p.stem: load_prompt(p.stem, d, id_prefix=id_prefix) for p in sorted(d.glob("*.yaml"))}
    missing = [n for n in required if n not in prompts]
    if missing:
        raise PromptError(f"{d}: missing prompt files {missing}")
    return prompts
