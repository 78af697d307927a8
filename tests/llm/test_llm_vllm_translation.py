"""The pure half of the vllm backend (vLLM itself is not installable here and is never imported)."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest

from visit_assets.lib.llm import LLMRequest, SamplingParams
from visit_assets.lib.llm.vllm_backend import STRUCTURED_KEY, VLLMBackend, vllm_result, vllm_sampling_kwargs
from visit_assets.lib.models.identity import ModelIdentity

MODEL = ModelIdentity("m", "w", "llm")


def test_sampling_kwargs_plain():
    r = LLMRequest.chat("hi", params=SamplingParams(temperature=0.7, top_p=0.9, max_tokens=33, seed=5, stop=("\n\n",)))
    assert vllm_sampling_kwargs(r) == {"n": 1, "temperature": 0.7, "top_p": 0.9, "max_tokens": 33, "seed": 5,
                                       "stop": ["\n\n"]}


def test_sampling_kwargs_default_seed_and_structured():
    r = LLMRequest.chat("hi", params=SamplingParams(seed=None), json_schema={"type": "object"})
    kw = vllm_sampling_kwargs(r, default_seed=99)
    assert kw["seed"] == 99 and "stop" not in kw
    assert kw[STRUCTURED_KEY] == {"json": {"type": "object"}}
    assert vllm_sampling_kwargs(LLMRequest.chat("x", regex=r"\d+"))[STRUCTURED_KEY] == {"regex": r"\d+"}


def out(text, n_prompt=5, n_out=3, finish="stop"):
    return SimpleNamespace(prompt_token_ids=list(range(n_prompt)),
                           outputs=[SimpleNamespace(text=text, token_ids=list(range(n_out)), finish_reason=finish)])


@pytest.mark.parametrize(
    "output, kw, status",
    [
        (out("a cat"), {}, "ok"),
        (out("a ca", finish="length"), {}, "truncated"),
        (out(""), {}, "empty"),
        (out('{"a": 1}'), {"json_schema": {"type": "object", "required": ["a"]}}, "ok"),
        (out("{oops"), {"json_schema": {"type": "object"}}, "unparseable"),
        (out("x", finish="abort"), {}, "error"),
        (SimpleNamespace(outputs=[]), {}, "error"),
    ],
)
def test_result_translation(output, kw, status):
    res = vllm_result(LLMRequest.chat("q", **kw), output, MODEL)
    assert res.status == status and res.model == MODEL
    if status == "ok":
        assert (res.prompt_tokens, res.completion_tokens) == (5, 3)


def test_backend_is_thin_and_lazy(gguf_path):
    b = VLLMBackend("Qwen/Qwen2.5-0.5B-Instruct", tensor_parallel_size=2, max_model_len=4096)
    assert b.identity == ModelIdentity("Qwen/Qwen2.5-0.5B-Instruct", "vllm:Qwen/Qwen2.5-0.5B-Instruct", "llm")
    assert b.engine_kwargs["tensor_parallel_size"] == 2 and b.engine_kwargs["max_model_len"] == 4096
    assert "vllm" not in sys.modules  # nothing imported until a batch runs
    shared = VLLMBackend(str(gguf_path))  # a GGUF: same identity as the llama_cpp backend
    assert shared.identity.weights == __import__("hashlib").sha256(gguf_path.read_bytes()).hexdigest()
    assert VLLMBackend("m", weights="abc", model_name="M").identity == ModelIdentity("M", "abc", "llm")
