"""Fixtures for the model layer: the real SmolLM2 GGUF in process, a real llama.cpp OpenAI server,
and scriptable stdlib HTTP servers for retry/outage behaviour."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # llm_stub, whatever pytest's import mode
from llm_stub import StubServer, free_port  # noqa: E402

from visit_assets.lib.llm.llama_cpp_backend import LlamaCppBackend, default_gguf_path, gguf_identity
from visit_assets.lib.llm.openai_backend import OpenAIBackend

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def stub_server():
    """Factory: stub_server(script) -> running StubServer (shut down after the test)."""
    servers: list[StubServer] = []

    def make(script=None) -> StubServer:
        s = StubServer(script) if script else StubServer()
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.close()


@pytest.fixture
def fast_openai():
    """Factory for an OpenAIBackend with quick backoff (tests must not sleep for long)."""

    def make(urls, **kw) -> OpenAIBackend:
        settings = dict(served_model="stub-model", max_retries=3, backoff_base_s=0.01, backoff_max_s=0.05, timeout_s=10,
                        connect_timeout_s=2)
        settings.update(kw)
        return OpenAIBackend(urls, **settings)

    return make


@pytest.fixture(scope="session")
def gguf_path() -> Path:
    return default_gguf_path()


@pytest.fixture(scope="session")
def llama_backend(gguf_path) -> LlamaCppBackend:
    """The llama_cpp backend with continuous batching (n_parallel=4)."""
    backend = LlamaCppBackend(gguf_path, n_ctx=2048, n_threads=1, seed=0, n_parallel=4)
    yield backend
    backend.close()


@pytest.fixture(scope="session")
def llama_server(gguf_path):
    """A real `python -m llama_cpp.server` on 127.0.0.1 (free port), ready when yielded."""
    port = free_port()
    log = open(os.devnull, "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf_path), "--host", "127.0.0.1", "--port", str(port),
         "--n_threads", "1", "--n_ctx", "2048", "--seed", "0"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    import httpx

    deadline = time.monotonic() + 120
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited with {proc.returncode}")
            try:
                if httpx.get(url + "/v1/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("llama_cpp.server did not become ready in 120 s")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="session")
def server_backend(llama_server, gguf_path) -> OpenAIBackend:
    """The openai backend against the real llama.cpp server, sharing llama_cpp's identity."""
    ident = gguf_identity(gguf_path)
    backend = OpenAIBackend(
        [llama_server], served_model=ident.name, model_name=ident.name, weights=ident.weights,
        schema_style="json_object", concurrency=2, timeout_s=120, max_retries=2,
    )
    yield backend
    backend.close()


@pytest.fixture(scope="session")
def llama_seq_backend(gguf_path) -> LlamaCppBackend:
    """The llama_cpp backend one request at a time (n_parallel=1: create_chat_completion)."""
    backend = LlamaCppBackend(gguf_path, n_ctx=2048, n_threads=1, seed=0, n_parallel=1)
    yield backend
    backend.close()


@pytest.fixture(params=["llama_cpp", "llama_cpp_seq", "openai"])
def real_backend(request):
    """Each real backend in turn (for the contract tests)."""
    name = {"llama_cpp": "llama_backend", "llama_cpp_seq": "llama_seq_backend", "openai": "server_backend"}[request.param]
    return request.getfixturevalue(name)


@pytest.fixture
def subprocess_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env
