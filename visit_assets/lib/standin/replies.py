"""One chat request in, one reply out: the competent answer for the recognised prompt, with the
planted content fault applied, and a log entry that says what the truth is."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from . import conversation, tasks, vision
from . import faults as F
from .phrasing import digest
from .recognise import GENERATE, UnknownPrompt, recognise
from .vision import BadImage

DESCRIBE = "describe"  # the description prompt: answered from the request's images (vision.py)


@dataclass
class Reply:
    text: str
    finish_reason: str = "stop"
    entry: dict[str, Any] = field(default_factory=dict)


def request_key(body: dict) -> str:
    """Hash of what decides the reply (messages + sampling), never of transport details."""
    keep = {k: body.get(k) for k in ("messages", "temperature", "top_p", "max_tokens", "seed", "stop")}
    return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:16]


def tokens(text: str) -> int:
    """Output tokens, counted as words (the stand-in has no tokenizer; a real one gives ~1.3x)."""
    return len(text.split())


def _generate(prompt_id: str, values: dict, h: int, fault: str | None, entry: dict) -> str:
    pairs = conversation.conversation_pairs(prompt_id, values, h)
    planted = [False] * len(pairs)
    if fault in (F.UNSUPPORTED, F.REPETITION) and pairs:
        j = h % len(pairs)
        p = pairs[j]
        extra = conversation.planted_claim(values, h) if fault == F.UNSUPPORTED else None
        pairs[j] = conversation.Pair(p.question, f"{p.answer} {extra}" if extra else F.loop(p.answer))
        planted[j] = True
    entry["pairs"] = [{"question": p.question, "answer": p.answer, "planted": planted[i]} for i, p in enumerate(pairs)]
    if fault == F.UNPARSEABLE:
        return "Here is what I would say about it. " + " ".join(p.answer for p in pairs)
    return conversation.render_pairs(pairs)


def _competent(role: str, prompt_id: str, values: dict, h: int, fault: str | None, entry: dict) -> str:
    if role == GENERATE:
        return _generate(prompt_id, values, h, fault, entry)
    if role == "verify":
        text, supported = conversation.verify(values)
        entry["truth"] = {"supported": supported}
        entry["pair"] = {"question": values["question"], "answer": values["answer"]}
        entry["facts"] = digest(values["facts"])  # which image: the verifier sees all of its facts
        return text
    if role == "declarative":
        return conversation.declarative(values)
    if role == "layout":
        return conversation.layout_paragraph(values)
    if role == "instruction":
        return tasks.instruction(values, h)
    if role == "merge":
        return tasks.merge(values)
    if role in ("answer", "example_answer"):
        entry["kind"] = tasks.kind_of(values["instruction"])
        entry["scene"] = digest(values["description"])
        return tasks.answer(values)
    if role == "fit":
        fits = tasks.fit(values)
        entry["truth"] = {"fits": fits}
        entry["instruction"] = values["instruction"]
        entry["scene"] = digest(values["description"])
        return "yes" if fits else "no"
    if role == "judge":
        return tasks.judge(values)
    return tasks.pairwise(values)


def reply(body: dict, plan: F.FaultPlan) -> Reply:
    """The reply to one /chat/completions body; UnknownPrompt when it is not a product prompt."""
    key = request_key(body)
    found = recognise(body.get("messages") or [])
    fault = plan.content(found.role, key)
    h = digest(key)
    entry: dict[str, Any] = {"key": key, "role": found.role, "prompt_id": found.prompt_id, "seed": body.get("seed"),
                             "fault": fault}
    if found.role == DESCRIBE:
        text = vision.describe(found.images, entry)
    else:
        text = _competent(found.role, found.prompt_id, found.values, h, fault, entry)
    finish = "stop"
    if fault == F.EMPTY:
        text = ""
    elif fault == F.REFUSAL:
        text = F.REFUSAL_TEXT
    elif fault == F.UNPARSEABLE and found.role != GENERATE:
        text = F.UNCLEAR[found.role] or ""  # None only for GENERATE
    elif fault == F.TRUNCATED:
        text, finish = F.truncate(text), "length"
    elif fault == F.REPETITION and found.role != GENERATE:
        text = F.loop(text)
    elif fault == F.SOURCE_LEAK:
        text = F.source_leak(text)
    elif fault == F.TOO_SHORT:
        text = F.too_short(text)
    limit = int(body.get("max_tokens") or 0)
    if limit and tokens(text) > limit:  # a real server stops at max_tokens
        cut = re.match(rf"\s*(?:\S+\s+){{{limit - 1}}}\S+", text)
        assert cut is not None  # the text has more than `limit` tokens
        text, finish = cut.group(0), "length"
        entry["cut_at_max_tokens"] = True
    entry.update(reply=text, finish_reason=finish)
    return Reply(text, finish, entry)


__all__ = ["BadImage", "Reply", "UnknownPrompt", "reply", "request_key", "tokens"]
