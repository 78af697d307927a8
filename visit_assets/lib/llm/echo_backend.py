"""`echo` backend: deterministic and model-free, for dry runs and fast pipeline tests.

It answers "echo: <last user message>" cut to max_tokens words (one word = one token), so the
accounting, truncation and caching paths behave as with a real model. Never use it for data.
Requests with images are taken (trivially: it looks at nothing) and the answer ends with
"[image <media type> <first 12 hex of its hash>]" per image, so a dry run tells images apart.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence

from visit_assets.lib.llm.types import LLMRequest, finish_result
from visit_assets.lib.models.identity import NO_MODEL, ModelIdentity


class EchoBackend:
    kind = "echo"

    def __init__(self, *, name: str = "echo", weights: str = NO_MODEL, delay_s: float = 0.0):
        self._identity = ModelIdentity(name=name, weights=weights, kind="llm")
        self.delay_s = delay_s
        self.calls = 0  # requests completed, all batches
        self._lock = threading.Lock()

    @property
    def identity(self) -> ModelIdentity:
        return self._identity

    def answer(self, request: LLMRequest):
        user = [m["content"] for m in request.messages if m["role"] == "user"]
        words = ("echo: " + (user[-1] if user else "")).split()
        words += [f"[image {img.media_type} {img.sha256[:12]}]" for img in request.images]
        prompt_tokens = sum(len(m["content"].split()) for m in request.messages)
        n = request.params.max_tokens
        finish = "length" if len(words) > n else "stop"
        text = " ".join(words[:n])
        if request.json_schema is not None and finish == "stop":
            text = json.dumps({"echo": text})
        return finish_result(
            request, text, prompt_tokens=prompt_tokens, completion_tokens=min(n, len(words)), finish_reason=finish,
            model=self._identity,
        )

    def complete(self, requests: Sequence[LLMRequest], on_result) -> None:
        for i, req in enumerate(requests):
            if self.delay_s:
                time.sleep(self.delay_s)
            res = self.answer(req)
            with self._lock:
                self.calls += 1
            on_result(i, res)
