"""Requests, results and the rules that turn raw model output into a recorded status.

Pure: no Dagster, no model library. Every backend produces `LLMResult`s through `finish_result`
so statuses mean the same thing whatever produced the text.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
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

# Image formats a vision-language model endpoint takes (vLLM, llama.cpp's server, OpenAI), by media type.
IMAGE_MEDIA_TYPES = ("image/png", "image/jpeg", "image/webp", "image/gif")
_MEDIA_ALIASES = {"image/jpg": "image/jpeg", "image/pjpeg": "image/jpeg"}
_MAGIC = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"), (b"GIF87a", "image/gif"),
          (b"GIF89a", "image/gif"))


def sniff_media_type(data: bytes) -> str | None:
    """The image media type from the first bytes (PNG, JPEG, GIF, WebP), None when none of them."""
    for magic, media_type in _MAGIC:
        if data.startswith(magic):
            return media_type
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


@dataclass(frozen=True)
class ImageInput:
    """One image sent with a request: its encoded bytes (PNG/JPEG/WebP/GIF) and media type.

    The cache key holds `sha256` (the bytes' content hash), never the bytes or a path; `name` is
    for messages and logs only (it is not compared or hashed).
    """

    data: bytes = field(repr=False)
    media_type: str
    name: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        label = f"image {self.name!r}" if self.name else "image"
        if not isinstance(self.data, bytes | bytearray | memoryview):
            raise TypeError(f"{label}: data must be bytes, got {type(self.data).__name__}")
        object.__setattr__(self, "data", bytes(self.data))
        if not self.data:
            raise ValueError(f"{label} is empty (0 bytes)")
        media_type = str(self.media_type or "").strip().lower()
        media_type = _MEDIA_ALIASES.get(media_type, media_type)
        if media_type not in IMAGE_MEDIA_TYPES:
            raise ValueError(f"{label}: unknown image media type {self.media_type!r}; use one of {IMAGE_MEDIA_TYPES}")
        object.__setattr__(self, "media_type", media_type)

    @classmethod
    def from_bytes(cls, data: bytes, *, name: str = "", media_type: str | None = None) -> ImageInput:
        """An image whose media type is read from its bytes unless given."""
        if media_type is None:
            media_type = sniff_media_type(bytes(data[:16]))
            if media_type is None and data:
                raise ValueError(f"image {name!r}: not a PNG, JPEG, WebP or GIF file (give media_type)")
        return cls(data, media_type or "", name)

    @classmethod
    def from_file(cls, path: str | Path, *, media_type: str | None = None) -> ImageInput:
        """An image read from a file; the path becomes its display name only (never part of a key)."""
        p = Path(path)
        return cls.from_bytes(p.read_bytes(), name=p.name, media_type=media_type)

    @cached_property
    def sha256(self) -> str:
        """Content hash of the bytes: what the cache key holds for this image."""
        return hashlib.sha256(self.data).hexdigest()

    def data_uri(self) -> str:
        return f"data:{self.media_type};base64,{base64.b64encode(self.data).decode('ascii')}"

    def content_part(self) -> dict[str, Any]:
        """The OpenAI chat content part for this image (vLLM and llama.cpp's server take it too)."""
        return {"type": "image_url", "image_url": {"url": self.data_uri()}}


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
    """One chat request. `tag` is the caller's bookkeeping (e.g. a row id) and never part of the key.

    `images` go with the last user message (for a vision-language model); message contents stay
    plain strings. Only backends that can send images take such a request (the openai backend as
    content parts, vllm); the others refuse it (`refuse_images`).
    """

    messages: tuple[Mapping[str, str], ...]
    params: SamplingParams = field(default_factory=SamplingParams)
    json_schema: Mapping[str, Any] | None = None
    regex: str | None = None
    tag: Any = field(default=None, compare=False)
    images: tuple[ImageInput, ...] = ()

    __hash__ = None  # type: ignore[assignment]  # holds dicts; dedup goes through cache_key, not hashing (mypy: the idiom for unhashable)

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
        images = (self.images,) if isinstance(self.images, ImageInput) else tuple(self.images or ())
        for img in images:
            if not isinstance(img, ImageInput):
                raise TypeError(f"images must be ImageInput values, got {type(img).__name__}")
        if images and not any(m["role"] == "user" for m in msgs):
            raise ValueError("a request with images needs a user message to attach them to")
        object.__setattr__(self, "images", images)

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
        images: Sequence[ImageInput] = (),
    ) -> LLMRequest:
        msgs = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
        return cls(tuple(msgs), params or SamplingParams(), json_schema, regex, tag, tuple(images))

    def message_list(self) -> list[dict[str, str]]:
        """The messages as text (without the images: see `openai_messages`)."""
        return [dict(m) for m in self.messages]

    def openai_messages(self) -> list[dict[str, Any]]:
        """The messages in the OpenAI chat format: as `message_list()` without images; with images,
        the last user message's content is a list of parts, the images first (as vision-language
        models are trained: image, then the instruction), then the text."""
        msgs: list[dict[str, Any]] = self.message_list()
        if self.images:
            last = max(i for i, m in enumerate(msgs) if m["role"] == "user")
            parts = [img.content_part() for img in self.images]
            msgs[last]["content"] = parts + [{"type": "text", "text": msgs[last]["content"]}]
        return msgs

    def key_payload(self, model: ModelIdentity) -> list[Any]:
        return [
            CACHE_KEY_VERSION,
            {"name": model.name, "weights": model.weights},
            [[m["role"], m["content"]] for m in self.messages],
            self.params.key_dict(),
            self.json_schema,
            self.regex,
            # images by content hash only, and only when there are some: a text-only key is what it always was
            *([[["image", img.media_type, img.sha256] for img in self.images]] if self.images else []),
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

    __hash__ = None  # type: ignore[assignment]  # unhashable on purpose (mypy does not know the idiom)

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


class ImagesNotSupportedError(ValueError):
    """A backend that cannot send images was given a request with images."""


def refuse_images(requests: Sequence[LLMRequest], backend: str) -> None:
    """Raise before anything is sent when a request carries images the backend cannot send."""
    n = sum(1 for r in requests if r.images)
    if n:
        raise ImagesNotSupportedError(
            f"the {backend} backend cannot send images ({n} request(s) carry some); use a vision-language model "
            "behind an OpenAI-compatible endpoint: backend 'openai' with base_urls of e.g. `vllm serve <VLM>` "
            "or llama.cpp's `llama-server --mmproj ...`")


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
    not constrain (or ignored the constraint) so a bad row is recorded as unparseable. Not the
    `jsonschema` package: no stage of the product asks for a JSON schema today (each parses its
    replies as text), so five more packages would serve only this fallback check of a user's request.
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
