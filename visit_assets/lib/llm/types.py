"""Requests, results and the rules that turn raw model output into a recorded status.

Pure: no Dagster, no model library. Every backend produces `LLMResult`s through `finish_result`
so statuses mean the same thing whatever produced the text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from visit_assets.lib.ids import content_hash, stable_json
from visit_assets.lib.models.identity import ModelIdentity

CACHE_KEY_VERSION = "llm-response-v1"  # bump when the meaning of a cached answer changes
CACHE_KEY_HEX = 32

OK = "ok"
EMPTY = "empty"
TRUNCATED = "truncated"
UNPARSEABLE = "unparseable"
ERROR = "error"
STATUSES = (OK, EMPTY, TRUNCATED, UNPARSEABLE, ERROR)
FAILURE_KINDS = (EMPTY, TRUNCATED, UNPARSEABLE, ERROR)
# Statuses that are the model's real answer to the request and so belong in the cache; ERROR is
# a transport/runtime failure and is retried on the next run.
FINISHED_STATUSES = frozenset({OK, EMPTY, TRUNCATED, UNPARSEABLE})

ROLES = ("system", "user", "assistant")


class LLMUnavailableError(RuntimeError):
    """An endpoint (or the whole backend) stayed down after the retries.

    Raised only after every result that did finish was handed to the cache, so a re-run resumes.
    `partial` holds the results per request (None where the request did not finish).
    `transient`: the endpoint may come back (connection errors, timeouts, 429/5xx outlasting the
    retries), so trying again later can succeed; False when every attempt would fail the same way
    (wrong key, URL or model: 401/403/404), which a retry only repeats.
    """

    def __init__(self, endpoints: Sequence[str], last_error: str, *, partial: list | None = None,
                 transient: bool = True):
        self.endpoints = list(endpoints)
        self.last_error = last_error
        self.partial = partial
        self.transient = transient
        super().__init__(f"LLM endpoint(s) unavailable after retries: {', '.join(self.endpoints)}; last error: {last_error}")


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 256
    seed: int | None = 0
    stop: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.stop, str):
            object.__setattr__(self, "stop", (self.stop,))
        else:
            object.__setattr__(self, "stop", tuple(self.stop))
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")

    def key_dict(self) -> dict[str, Any]:
        return {
            "temperature": float(self.temperature),
            "top_p": float(self.top_p),
            "max_tokens": int(self.max_tokens),
            "seed": self.seed,
            "stop": list(self.stop),
        }


@dataclass(frozen=True, eq=True)
class LLMRequest:
    """One chat request. `tag` is the caller's bookkeeping (e.g. a row id) and never part of the key."""

    messages: tuple[Mapping[str, str], ...]
    params: SamplingParams = field(default_factory=SamplingParams)
    json_schema: Mapping[str, Any] | None = None
    regex: str | None = None
    tag: Any = field(default=None, compare=False)

    __hash__ = None  # holds dicts; dedup goes through cache_key, not hashing

    def __post_init__(self) -> None:
        msgs = []
        for m in self.messages:
            role, content = m["role"], m["content"]
            if role not in ROLES:
                raise ValueError(f"unknown message role {role!r}")
            if not isinstance(content, str):
                raise TypeError("message content must be a string")
            msgs.append({"role": role, "content": content})
        if not msgs:
            raise ValueError("a request needs at least one message")
        object.__setattr__(self, "messages", tuple(msgs))
        if self.json_schema is not None and self.regex is not None:
            raise ValueError("give json_schema or regex, not both")
        if self.regex is not None:
            re.compile(self.regex)

    @classmethod
    def chat(
        cls,
        user: str,
        *,
        system: str | None = None,
        params: SamplingParams | None = None,
        json_schema: Mapping[str, Any] | None = None,
        regex: str | None = None,
        tag: Any = None,
    ) -> LLMRequest:
        msgs = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
        return cls(tuple(msgs), params or SamplingParams(), json_schema, regex, tag)

    def message_list(self) -> list[dict[str, str]]:
        return [dict(m) for m in self.messages]

    def key_payload(self, model: ModelIdentity) -> list[Any]:
        return [
            CACHE_KEY_VERSION,
            {"name": model.name, "weights": model.weights},
            [[m["role"], m["content"]] for m in self.messages],
            self.params.key_dict(),
            self.json_schema,
            self.regex,
        ]

    def cache_key(self, model: ModelIdentity) -> str:
        """Content hash of everything that determines the answer (never the tag or the backend)."""
        return content_hash(*self.key_payload(model), length=CACHE_KEY_HEX)


@dataclass(frozen=True)
class LLMResult:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str | None
    status: str
    error: str | None = None
    parsed: Any = None
    cached: bool = False
    cache_key: str = ""
    model: ModelIdentity | None = None
    tag: Any = None

    __hash__ = None

    @property
    def ok(self) -> bool:
        return self.status == OK

    @property
    def finished(self) -> bool:
        return self.status in FINISHED_STATUSES

    def row_fields(self) -> dict[str, Any]:
        """The columns every stage's output row carries about the LLM call that made it."""
        return {
            "raw_text": self.text, "llm_status": self.status, "finish_reason": self.finish_reason,
            "llm_error": self.error, "cache_key": self.cache_key,
            "model": self.model.label() if self.model else None,
            "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
        }

    def to_record(self) -> dict[str, Any]:
        """What the cache stores (no tag, no cached flag: those belong to the asking run)."""
        return {
            "text": self.text,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "finish_reason": self.finish_reason,
            "status": self.status,
            "error": self.error,
            "parsed": self.parsed,
            "model": self.model.as_dict() if self.model else None,
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any], *, cache_key: str, cached: bool, tag: Any = None) -> LLMResult:
        model = record.get("model")
        return cls(
            text=record["text"],
            prompt_tokens=int(record["prompt_tokens"]),
            completion_tokens=int(record["completion_tokens"]),
            finish_reason=record.get("finish_reason"),
            status=record["status"],
            error=record.get("error"),
            parsed=record.get("parsed"),
            cached=cached,
            cache_key=cache_key,
            model=ModelIdentity(**model) if model else None,
            tag=tag,
        )

    def with_run_fields(self, *, cached: bool, tag: Any) -> LLMResult:
        return replace(self, cached=cached, tag=tag)


def error_result(request: LLMRequest, message: str, *, model: ModelIdentity | None = None) -> LLMResult:
    return LLMResult("", 0, 0, None, ERROR, error=message, model=model, tag=request.tag)


def finish_result(
    request: LLMRequest,
    text: str | None,
    *,
    prompt_tokens: int,
    completion_tokens: int,
    finish_reason: str | None,
    model: ModelIdentity | None,
) -> LLMResult:
    """Classify raw output: truncated (stopped at max_tokens) > empty > unparseable > ok."""
    text = text or ""
    parsed: Any = None
    error: str | None = None
    if finish_reason == "length":
        status = TRUNCATED
        error = f"stopped at max_tokens={request.params.max_tokens}"
    elif not text.strip():
        status = EMPTY
        error = "model returned no text"
    elif request.json_schema is not None:
        try:
            parsed = json.loads(text)
        except ValueError as exc:
            status, error = UNPARSEABLE, f"not JSON: {exc}"
        else:
            problem = schema_problem(parsed, request.json_schema)
            status, error = (UNPARSEABLE, problem) if problem else (OK, None)
            if problem:
                parsed = None
    elif request.regex is not None:
        if re.fullmatch(request.regex, text):
            status, parsed = OK, text
        else:
            status, error = UNPARSEABLE, "output does not match the regex"
    else:
        status = OK
    return LLMResult(
        text=text,
        prompt_tokens=int(prompt_tokens),
        completion_tokens=int(completion_tokens),
        finish_reason=finish_reason,
        status=status,
        error=error,
        parsed=parsed,
        model=model,
        tag=request.tag,
    )


_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}


def schema_problem(value: Any, schema: Mapping[str, Any], path: str = "$") -> str | None:
    """A small JSON-schema check (type, enum, const, properties, required, items, lengths).

    Grammar-constrained decoding already enforces the schema; this catches backends that could
    not constrain (or ignored the constraint) so a bad row is recorded as unparseable.
    """
    if not isinstance(schema, Mapping):
        return None
    if "anyOf" in schema or "oneOf" in schema:
        options = schema.get("anyOf") or schema.get("oneOf") or []
        if options and all(schema_problem(value, s, path) for s in options):
            return f"{path}: matches none of the allowed schemas"
    if "enum" in schema and value not in schema["enum"]:
        return f"{path}: {value!r} not in enum"
    if "const" in schema and value != schema["const"]:
        return f"{path}: {value!r} != const"
    typ = schema.get("type")
    if typ is not None:
        types = [typ] if isinstance(typ, str) else list(typ)
        ok = False
        for t in types:
            py = _JSON_TYPES.get(t)
            if py is None:
                ok = True
            elif isinstance(value, bool) and t in ("integer", "number"):
                continue
            elif isinstance(value, py):
                ok = True
        if not ok:
            return f"{path}: expected {typ}, got {type(value).__name__}"
    if isinstance(value, dict):
        for name in schema.get("required", []):
            if name not in value:
                return f"{path}: missing required property {name!r}"
        props = schema.get("properties", {})
        for name, sub in props.items():
            if name in value:
                problem = schema_problem(value[name], sub, f"{path}.{name}")
                if problem:
                    return problem
        if schema.get("additionalProperties") is False:
            extra = sorted(set(value) - set(props))
            if extra:
                return f"{path}: unexpected properties {extra}"
    if isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, Mapping):
            for i, v in enumerate(value):
                problem = schema_problem(v, items, f"{path}[{i}]")
                if problem:
                    return problem
        if "minItems" in schema and len(value) < schema["minItems"]:
            return f"{path}: fewer than {schema['minItems']} items"
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            return f"{path}: more than {schema['maxItems']} items"
    if isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            return f"{path}: shorter than {schema['minLength']}"
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            return f"{path}: longer than {schema['maxLength']}"
    return None


def schema_json(schema: Mapping[str, Any]) -> str:
    return stable_json(schema)
