"""A fake OpenAI-compatible chat server for asset-level fault tests (stdlib only, runs in a thread).

Replies are derived from the request content, so every run asks the same questions and gets the
same answers: an Instructify verification prompt gets "True", a declarative QA rewrite one
sentence, anything else a one-pair "Question: / Answer:" reply naming a hash of the request. Every
request body is counted by its hash when it arrives (`received`) and again once answered with 200
(`answered`).

Faults, set on the instance:
- `hold_after = n`: answer the first n requests, then hold every later one unanswered (its
  client waits) until `release()`; held requests are then dropped without an answer;
- `die_after = n`: answer the first n requests; the next one makes the server go away: that
  connection is dropped, the listening socket is closed (new connections are refused) and every
  later request on a kept-alive connection is dropped too. `start()` brings it back on the same port.

Each server serves under its own random path (`url` holds it): a request for another path (a process
of another test that was given the same port after that test's server closed) is refused with 404 and
counted in `strays`, never in `received`, so tests running side by side cannot count each other's
requests.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from visit_assets.lib.instructify.facts import DECLARATIVE_SYSTEM
from visit_assets.lib.instructify.sampling import VERIFY_SYSTEM


def body_hash(body: dict) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def reply_text(body: dict) -> str:
    """A deterministic reply the product parses as a valid answer to what was asked."""
    messages = body.get("messages") or []
    system = next((m["content"] for m in messages if m["role"] == "system"), "")
    if system == VERIFY_SYSTEM:
        return "True\nFacts: 1"
    h = body_hash(body)[:8]
    if system == DECLARATIVE_SYSTEM:
        return f"The picture shows detail {h}."
    return f"Question: What does detail {h} of the picture show?\nAnswer: Detail {h} shows the subject clearly."


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client killed or a connection dropped on purpose: expected here


class FakeLLMServer:
    def __init__(self, *, reply: Callable[[dict], str] = reply_text, delay_s: float = 0.0):
        self.reply, self.delay_s = reply, delay_s
        self.hold_after: int | None = None
        self.die_after: int | None = None
        self.received: Counter[str] = Counter()  # body hash -> requests received (every attempt)
        self.answered: Counter[str] = Counter()  # body hash -> 200 replies sent
        self.bodies: dict[str, dict] = {}
        self.admitted = 0  # requests let through to be answered (what hold_after / die_after count)
        self.held = 0  # requests currently held (hold_after)
        self.dead = False
        self.port = 0
        self.token = secrets.token_hex(6)  # this server's path prefix (see the module docstring)
        self.strays = 0  # requests for another server's path
        self.cond = threading.Condition()
        self._release = threading.Event()
        self._httpd: _QuietServer | None = None
        self.start()

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Listen (again) on the same port; counters are kept."""
        with self.cond:
            self.dead, self.die_after = False, None
        self._httpd = _QuietServer(("127.0.0.1", self.port), self._handler())
        self.port = self._httpd.server_address[1]
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()

    def close(self) -> None:
        self.release()
        self.stop()

    def release(self) -> None:
        self._release.set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/{self.token}/v1"

    def reset_counts(self) -> None:
        with self.cond:
            self.received.clear()
            self.answered.clear()
            self.admitted = 0

    def wait_for(self, predicate: Callable[[FakeLLMServer], bool], timeout: float) -> bool:
        """Block until predicate(self) holds (checked on every request event), or the timeout."""
        with self.cond:
            return self.cond.wait_for(lambda: predicate(self), timeout)

    # -- serving --------------------------------------------------------------------------------

    def _die(self) -> None:
        self.dead = True
        threading.Thread(target=self.stop, daemon=True).start()  # not from a handler of serve_forever's

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def drop(self) -> None:
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

            def refuse_stray(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with server.cond:
                    server.strays += 1
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_POST(self) -> None:
                if not self.path.startswith(f"/{server.token}/"):
                    return self.refuse_stray()
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                key = body_hash(body)
                with server.cond:
                    server.received[key] += 1
                    server.bodies[key] = body
                    n = server.admitted  # requests let through so far
                    dying = server.dead or (server.die_after is not None and n >= server.die_after)
                    if dying and not server.dead:
                        server._die()
                    hold = not dying and server.hold_after is not None and n >= server.hold_after
                    server.held += hold
                    server.admitted += not (dying or hold)
                    server.cond.notify_all()
                if dying:
                    return self.drop()
                if hold:
                    server._release.wait(120)
                    with server.cond:
                        server.held -= 1
                        server.cond.notify_all()
                    return self.drop()
                if server.delay_s:
                    time.sleep(server.delay_s)  # a slow model, not synchronisation
                text = server.reply(body)
                data = json.dumps({
                    "id": key, "object": "chat.completion", "model": body.get("model"),
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 10, "completion_tokens": len(text.split()),
                              "total_tokens": 10 + len(text.split())},
                }).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                self.wfile.flush()
                with server.cond:
                    server.answered[key] += 1
                    server.cond.notify_all()

        return Handler
