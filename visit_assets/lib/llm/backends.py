"""Backend choice by configuration: `make_backend("llama_cpp" | "openai" | "vllm" | "echo", **settings)`."""

from __future__ import annotations

from typing import Any

from visit_assets.lib.llm.client import Backend

BACKENDS = ("llama_cpp", "openai", "vllm", "echo")


def make_backend(kind: str, **settings: Any) -> Backend:
    """Build a backend; `settings` are the backend class's keyword arguments (None values dropped)."""
    settings = {k: v for k, v in settings.items() if v is not None}
    if kind == "llama_cpp":
        from visit_assets.lib.llm.llama_cpp_backend import LlamaCppBackend

        return LlamaCppBackend(**settings)
    if kind == "openai":
        from visit_assets.lib.llm.openai_backend import OpenAIBackend

        return OpenAIBackend(**settings)
    if kind == "vllm":
        from visit_assets.lib.llm.vllm_backend import VLLMBackend

        return VLLMBackend(**settings)
    if kind == "echo":
        from visit_assets.lib.llm.echo_backend import EchoBackend

        return EchoBackend(**settings)
    raise ValueError(f"unknown LLM backend {kind!r}; choose one of {BACKENDS}")
