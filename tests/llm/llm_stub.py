"""Scriptable stdlib HTTP servers on 127.0.0.1 standing in for OpenAI-compatible endpoints."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def chat_response(content: str | None, finish: str = "stop", prompt_tokens: int = 7, completion_tokens: int = 3) -> dict:
    return {
        "id": "x",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }


def echo_reply(body: dict) -> tuple[int, dict, Any]:
    user = [m["content"] for m in body["messages"] if m["role"] == "user"][-1]
    return 200, {}, chat_response(f"echo {user}")


CLOSE = "close"  # a script returning this drops the connection without answering


class StubServer:
    """A real HTTP server on 127.0.0.1 whose answers come from `script(n, body)`.

    `script` gets the 1-based request number and the parsed JSON body and returns
    (status, headers, json_body) or CLOSE.
    """

    def __init__(self, script: Callable[[int, dict], Any] = lambda n, body: echo_reply(body)):
        self.script = script
        self.count = 0
        self.bodies: list[dict] = []
        self.headers: list[dict] = []
        self._lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                with stub._lock:
                    stub.count += 1
                    n = stub.count
                    stub.bodies.append(body)
                    stub.headers.append(dict(self.headers))
                answer = stub.script(n, body)
                if answer == CLOSE:
                    self.close_connection = True
                    try:
                        self.connection.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    return
                status, headers, payload = answer
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
