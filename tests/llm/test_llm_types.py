"""Pure rules: cache keys, output classification, schema checks."""

from __future__ import annotations

import dataclasses

import pytest

from visit_assets.lib.llm.types import (
    EMPTY,
    OK,
    TRUNCATED,
    UNPARSEABLE,
    LLMRequest,
    SamplingParams,
    finish_result,
    schema_problem,
)
from visit_assets.lib.models.identity import ModelIdentity

MODEL = ModelIdentity("m.gguf", "a" * 64, "llm")
SCHEMA = {"type": "object", "properties": {"label": {"type": "string"}, "n": {"type": "integer"}}, "required": ["label"]}


def base(**kw) -> LLMRequest:
    args = dict(messages=({"role": "system", "content": "sys"}, {"role": "user", "content": "hi"}), params=SamplingParams())
    args.update(kw)
    return LLMRequest(**args)


def test_key_ignores_tag_and_is_stable():
    a, b = base(tag="row-1"), base(tag="row-2")
    assert a.cache_key(MODEL) == b.cache_key(MODEL)
    assert len(a.cache_key(MODEL)) == 32
    assert a == b  # tag is not compared either


def test_key_changes_with_everything_that_determines_the_answer():
    ref = base().cache_key(MODEL)
    variants = {
        "weights": base().cache_key(ModelIdentity("m.gguf", "b" * 64, "llm")),
        "model name": base().cache_key(ModelIdentity("other.gguf", "a" * 64, "llm")),
        "message": base(messages=({"role": "system", "content": "sys"},
                                  {"role": "user", "content": "hi!"})).cache_key(MODEL),
        "role": base(messages=({"role": "user", "content": "sys"}, {"role": "user", "content": "hi"})).cache_key(MODEL),
        "schema": base(json_schema=SCHEMA).cache_key(MODEL),
        "regex": base(regex="[a-z]+").cache_key(MODEL),
    }
    for field, value in [("temperature", 0.5), ("top_p", 0.9), ("max_tokens", 17), ("seed", 1), ("stop", ("\n",))]:
        variants[field] = base(params=dataclasses.replace(SamplingParams(), **{field: value})).cache_key(MODEL)
    variants["seed None"] = base(params=SamplingParams(seed=None)).cache_key(MODEL)
    assert all(v != ref for v in variants.values()), [k for k, v in variants.items() if v == ref]
    assert len(set(variants.values())) == len(variants)


def test_key_ignores_kind_and_schema_key_order():
    assert base().cache_key(MODEL) == base().cache_key(ModelIdentity("m.gguf", "a" * 64, ""))
    s2 = {"required": ["label"], "properties": {"n": {"type": "integer"}, "label": {"type": "string"}}, "type": "object"}
    assert base(json_schema=SCHEMA).cache_key(MODEL) == base(json_schema=s2).cache_key(MODEL)


def test_request_validation():
    with pytest.raises(ValueError):
        LLMRequest(messages=())
    with pytest.raises(ValueError):
        LLMRequest(messages=({"role": "robot", "content": "x"},))
    with pytest.raises(ValueError):
        base(json_schema=SCHEMA, regex="x")
    with pytest.raises(ValueError):
        SamplingParams(max_tokens=0)
    assert SamplingParams(stop="\n").stop == ("\n",)
    r = LLMRequest.chat("q", system="s", tag=3)
    assert [m["role"] for m in r.messages] == ["system", "user"] and r.tag == 3


@pytest.mark.parametrize(
    "text, finish, kw, status",
    [
        ("hello", "stop", {}, OK),
        ("", "stop", {}, EMPTY),
        ("   \n", "stop", {}, EMPTY),
        ("hel", "length", {}, TRUNCATED),
        ('{"label": "x"', "length", {"json_schema": SCHEMA}, TRUNCATED),
        ('{"label": "x"}', "stop", {"json_schema": SCHEMA}, OK),
        ("not json", "stop", {"json_schema": SCHEMA}, UNPARSEABLE),
        ('{"n": 1}', "stop", {"json_schema": SCHEMA}, UNPARSEABLE),
        ('{"label": 5}', "stop", {"json_schema": SCHEMA}, UNPARSEABLE),
        ("abc", "stop", {"regex": "[a-c]+"}, OK),
        ("abd", "stop", {"regex": "[a-c]+"}, UNPARSEABLE),
    ],
)
def test_classification(text, finish, kw, status):
    res = finish_result(base(**kw), text, prompt_tokens=3, completion_tokens=2, finish_reason=finish, model=MODEL)
    assert res.status == status
    assert (res.error is None) == (status == OK)
    if status == OK and "json_schema" in kw:
        assert res.parsed == {"label": "x"}


def test_schema_problem():
    assert schema_problem({"label": "a", "n": 2}, SCHEMA) is None
    assert schema_problem({"label": "a", "n": True}, SCHEMA)  # bool is not an integer
    assert schema_problem([1, "x"], {"type": "array", "items": {"type": "integer"}})
    assert schema_problem("b", {"enum": ["a"]})
    assert schema_problem({"a": 1, "z": 2}, {"type": "object", "properties": {"a": {}}, "additionalProperties": False})
    assert schema_problem(3.5, {"type": ["integer", "null"]})
    assert schema_problem(None, {"type": ["integer", "null"]}) is None
