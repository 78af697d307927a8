"""Fixtures for the Instructify stages: real sample metadata, the packaged registry, and a scripted
stand-in for `LLMClient.generate` (the input of the loop under test, not the loop itself)."""

from __future__ import annotations

import re
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

from visit_assets import settings
from visit_assets.lib.instructify.registry import load_registry
from visit_assets.lib.instructify.sampling import VERIFY_SYSTEM
from visit_assets.lib.llm.types import LLMRequest, LLMResult
from visit_assets.lib.metadata.dataset import load_dataset, read_layout
from visit_assets.lib.metadata.grouping import group_records
from visit_assets.lib.models.identity import ModelIdentity

FAKE_MODEL = ModelIdentity(name="scripted-llm", weights="f" * 64, kind="llm")


@pytest.fixture(scope="session")
def sample_records() -> dict[str, dict]:
    """The embedded sample dataset, grouped: image_key -> record dict."""
    records = load_dataset(read_layout(settings.sample_dataset()), n_shards=1)
    grouped, _ = group_records(records, None)
    return {r["image_key"]: r for r in grouped.to_dicts()}


@pytest.fixture(scope="session")
def registry():
    return load_registry()


def make_result(text: str, status: str = "ok", *, request: LLMRequest | None = None, error: str | None = None,
                model: ModelIdentity | None = FAKE_MODEL) -> LLMResult:
    key = request.cache_key(model or FAKE_MODEL) if request is not None else ""
    finish = "length" if status == "truncated" else "stop"
    return LLMResult(text, 0, len(text.split()), finish, status, error=error, cache_key=key, model=model,
                     tag=request.tag if request is not None else None)


def request_facts(request: LLMRequest) -> list[str]:
    """The numbered facts shown in a request ("[1] ..." lines)."""
    user = request.messages[-1]["content"]
    return re.findall(r"^\[\d+\] (.*)$", user, flags=re.MULTILINE)


def facts_reply(request: LLMRequest, n: int = 2) -> str:
    """A well-formed reply whose answers repeat the first n facts shown (so they get consumed)."""
    blocks = []
    for fact in request_facts(request)[:n]:
        words = re.findall(r"[A-Za-z]+", fact)[:5]
        blocks.append(f"Question: What about {' '.join(words)}?\nAnswer: {fact}")
    return "\n\n".join(blocks)


class ScriptedLLM:
    """Callable like LLMClient.generate. `gen(image_id, iteration, request)` and
    `verify(image_id, iteration, pair_index, request)` return reply text or an LLMResult."""

    def __init__(self, gen: Callable[..., Any] | None = None, verify: Callable[..., Any] | None = None):
        self.gen = gen or (lambda image_id, it, req: facts_reply(req))
        self.verify = verify or (lambda image_id, it, j, req: "True")
        self.calls: list[list[LLMRequest]] = []

    def __call__(self, requests: list[LLMRequest]) -> list[LLMResult]:
        self.calls.append(list(requests))
        out = []
        for r in requests:
            is_verify = r.messages[0]["content"] == VERIFY_SYSTEM
            reply = self.verify(*r.tag, r) if is_verify else self.gen(*r.tag, r)
            out.append(reply if isinstance(reply, LLMResult) else make_result(reply, request=r))
        return out

    def kinds(self) -> list[str]:
        return ["verify" if c[0].messages[0]["content"] == VERIFY_SYSTEM else "generate" for c in self.calls]


@pytest.fixture(scope="session")
def fakes() -> SimpleNamespace:
    return SimpleNamespace(LLM=ScriptedLLM, result=make_result, facts_reply=facts_reply, request_facts=request_facts,
                           model=FAKE_MODEL)
