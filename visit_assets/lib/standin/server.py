"""The stand-in behind an OpenAI-compatible HTTP API on 127.0.0.1 (stdlib only, threads).

    POST /v1/chat/completions   a reply (see replies.py), or a planted 503 / delay
    GET  /v1/models             the model it serves: STAND_IN_MODEL (also as STAND_IN_MODEL/<role>)
    GET  /stand-in/log          every request so far with its fault and truth (JSON list)
    GET  /stand-in/stats        replies, output tokens and the emulated decoder's busy seconds so far

Serving speed is emulated so a pipeline can be measured against a GPU-like server:
`tokens_per_s` per request (a reply of n tokens takes n / tokens_per_s seconds), `total_tokens_per_s`
shared by all requests, and at most `max_concurrency` requests decoding at once (others queue).
0 means unlimited. The emulation sleeps; its own CPU cost per request stays tiny. Its busy time is
the seconds the shared decoder spends on replies (sum of tokens / total_tokens_per_s): the least
wall time any client could take for the same replies, the denominator of a pipeline's overhead.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from . import ROLE_MODELS, STAND_IN_MODEL, is_stand_in, role_model
from .faults import SERVER_ERROR, SLOW, FaultPlan
from .recognise import images_of, text_of
from .replies import BadImage, UnknownPrompt, reply, request_key, tokens

IMAGE_TOKENS = 576  # prompt tokens counted per image (LLaVA-1.5's 24 x 24 patches at 336 px)


def pace(n_tokens: int, now: float, next_free: float, tokens_per_s: float, total_tokens_per_s: float) -> tuple[float, float]:
    """(seconds this reply takes, when the shared budget is next free). A reply decodes at
    `tokens_per_s` on its own, and all replies share `total_tokens_per_s` (0: no limit)."""
    own = n_tokens / tokens_per_s if tokens_per_s > 0 else 0.0
    if total_tokens_per_s <= 0:
        return own, next_free
    done = max(now, next_free) + n_tokens / total_tokens_per_s
    return max(own, done - now), done


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024  # the listen backlog: socketserver's 5 resets a client opening 64 connections at once


class StandInServer:
    def __init__(self, plan: FaultPlan | None = None, *, host: str = "127.0.0.1", port: int = 0,
                 tokens_per_s: float = 0.0, total_tokens_per_s: float = 0.0, max_concurrency: int = 0,
                 log_path: str | Path | None = None):
        self.plan = plan or FaultPlan()
        self.tokens_per_s, self.total_tokens_per_s = tokens_per_s, total_tokens_per_s
        self.max_concurrency = max_concurrency
        self._slots = threading.Semaphore(max_concurrency) if max_concurrency > 0 else None
        self._lock = threading.Lock()
        self._next_free = 0.0  # the shared token budget: when the server can next emit a token
        self.busy_s = 0.0  # the shared decoder's busy time (0 without total_tokens_per_s)
        self.output_tokens = 0
        self.first_request_at: float | None = None  # epoch seconds
        self.last_reply_at: float | None = None
        self.log: list[dict[str, Any]] = []
        self.attempts: Counter[str] = Counter()  # request key -> HTTP attempts
        self.answered: Counter[str] = Counter()  # request key -> 200 replies
        self.log_path = Path(log_path) if log_path else None
        self._httpd = _Server((host, port), self._handler())
        bound, self.port = self._httpd.server_address[:2]
        self.host = str(bound)  # a str already (AF_INET)
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def start(self) -> StandInServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> StandInServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {"replies": sum(self.answered.values()), "output_tokens": self.output_tokens,
                    "busy_s": round(self.busy_s, 3), "tokens_per_s": self.tokens_per_s,
                    "total_tokens_per_s": self.total_tokens_per_s,
                    "max_concurrency": self.max_concurrency, "first_request_at": self.first_request_at,
                    "last_reply_at": self.last_reply_at}

    # -- one request ---------------------------------------------------------------------------

    def _record(self, entry: dict[str, Any]) -> None:
        with self._lock:
            entry["n"] = len(self.log)
            self.log.append(entry)
            if self.log_path:
                with self.log_path.open("a", encoding="utf-8") as fh:
                    fh.write(json.dumps(entry) + "\n")

    def _pace(self, n_tokens: int) -> None:
        with self._lock:
            delay, self._next_free = pace(n_tokens, time.monotonic(), self._next_free, self.tokens_per_s,
                                          self.total_tokens_per_s)
            self.output_tokens += n_tokens
            if self.total_tokens_per_s > 0:
                self.busy_s += n_tokens / self.total_tokens_per_s
        if delay > 0:
            time.sleep(delay)

    def handle(self, body: dict) -> tuple[int, dict]:
        key = request_key(body)
        with self._lock:
            self.first_request_at = self.first_request_at or time.time()
            self.attempts[key] += 1
            attempt = self.attempts[key]
        if not is_stand_in(body.get("model")):  # its replies must never be recorded under a real model's name
            self._record({"key": key, "status": 400, "error": f"model {body.get('model')!r}"})
            return 400, {"error": {"message": f"stand-in: this test instrument serves only {STAND_IN_MODEL!r} or "
                                   f"{STAND_IN_MODEL + '/<role>'!r} "
                                   f"(set VISIT_LLM_SERVED_MODEL={STAND_IN_MODEL}), not {body.get('model')!r}",
                                   "type": "invalid_request_error"}}
        transport = self.plan.transport(key)
        if transport == SERVER_ERROR and attempt == 1:  # transient: the retry is answered
            self._record({"key": key, "transport": SERVER_ERROR, "status": 503})
            return 503, {"error": {"message": "stand-in: planted server error", "type": "server_error"}}
        try:
            r = reply(body, self.plan)
        except (UnknownPrompt, BadImage) as exc:  # BadImage: an image it cannot load, a 400 as from vLLM
            self._record({"key": key, "status": 400, "error": str(exc)})
            return 400, {"error": {"message": f"stand-in: {exc}", "type": "invalid_request_error"}}
        except Exception as exc:  # a bug in the instrument: say so, never drop the connection silently
            self._record({"key": key, "status": 500, "error": f"{type(exc).__name__}: {exc}"})
            return 500, {"error": {"message": f"stand-in failed: {type(exc).__name__}: {exc}", "type": "server_error"}}
        if self._slots:
            self._slots.acquire()
        try:
            if transport == SLOW:
                time.sleep(self.plan.slow_s)
            self._pace(tokens(r.text))
        finally:
            if self._slots:
                self._slots.release()
        prompt_tokens = sum(tokens(text_of(m.get("content"))) + IMAGE_TOKENS * len(images_of(m.get("content")))
                            for m in body.get("messages") or [])
        with self._lock:
            self.answered[key] += 1
            self.last_reply_at = time.time()
        self._record({**r.entry, "transport": transport, "status": 200, "attempt": attempt, "model": body["model"],
                      "tokens": tokens(r.text), "at": round(time.time(), 4)})
        return 200, {
            "id": f"standin-{key}", "object": "chat.completion", "created": int(time.time()), "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": r.text}, "finish_reason": r.finish_reason}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": tokens(r.text),
                      "total_tokens": prompt_tokens + tokens(r.text)},
        }

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, payload: Any) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path.rstrip("/") == "/v1/models":
                    names = [STAND_IN_MODEL, *(role_model(r) for r in ROLE_MODELS)]
                    self._send(200, {"object": "list", "data": [
                        {"id": name, "object": "model", "owned_by": "visit-assets test instrument"} for name in names]})
                elif self.path.rstrip("/") == "/stand-in/log":
                    with server._lock:
                        entries = list(server.log)
                    self._send(200, entries)
                elif self.path.rstrip("/") == "/stand-in/stats":
                    self._send(200, server.stats())
                else:
                    self._send(404, {"error": {"message": "not found"}})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                except ValueError:
                    self._send(400, {"error": {"message": "body is not JSON"}})
                    return
                if self.path.rstrip("/") != "/v1/chat/completions":
                    self._send(404, {"error": {"message": "not found"}})
                    return
                self._send(*server.handle(body))

        return Handler
