"""The model layer for LLMs: one request/result interface, a persistent cache, pluggable backends.

    from visit_assets.lib.llm import LLMClient, LLMCache, LLMRequest, SamplingParams, make_backend
    client = LLMClient(make_backend("llama_cpp"), LLMCache(path))
    results = client.generate([LLMRequest.chat("Describe ...", system="...")])

Backend modules (llama_cpp, openai/urllib3, vllm) are imported only when their backend is built.
"""

from visit_assets.lib.llm.backends import BACKENDS, make_backend
from visit_assets.lib.llm.cache import FileCache, LLMCache, NullCache, open_cache
from visit_assets.lib.llm.client import Backend, LLMClient, LLMStats
from visit_assets.lib.llm.types import (
    EMPTY,
    ERROR,
    FAILURE_KINDS,
    OK,
    STATUSES,
    TRUNCATED,
    UNPARSEABLE,
    ImageInput,
    ImagesNotSupportedError,
    LLMRequest,
    LLMResult,
    LLMUnavailableError,
    SamplingParams,
)

__all__ = [
    "BACKENDS",
    "EMPTY",
    "ERROR",
    "FAILURE_KINDS",
    "OK",
    "STATUSES",
    "TRUNCATED",
    "UNPARSEABLE",
    "Backend",
    "FileCache",
    "ImageInput",
    "ImagesNotSupportedError",
    "LLMCache",
    "open_cache",
    "LLMClient",
    "LLMRequest",
    "LLMResult",
    "LLMStats",
    "LLMUnavailableError",
    "NullCache",
    "SamplingParams",
    "make_backend",
]
