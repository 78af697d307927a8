import pytest

from visit_assets.lib.mminstruct.prompts import PROMPT_NAMES, PromptError, parse_prompt

# Fingerprints of the shipped prompt texts per version. Editing a prompt changes its fingerprint:
# bump its `version` in the YAML and record the new pair here.
EXPECTED = {
    "instruction_generation": 1,
    "cluster_merge": 1,
    "answer_generation": 1,
    "fit_check": 1,
    "example_answer": 1,
    "image_description": 1,
}
FINGERPRINTS = {
    ("instruction_generation", 1): "c59e8f0dcdeec2f2",
    ("cluster_merge", 1): "77d1fcff7b5927ec",
    ("answer_generation", 1): "c568024b49c4571d",
    ("fit_check", 1): "3ea5dad6c78abda8",
    ("example_answer", 1): "7f8748085041b791",
    ("image_description", 1): "2c80a97e36a7875b",
}


def test_all_prompts_load_with_versions(prompts):
    assert set(PROMPT_NAMES) <= set(prompts)
    for name, p in prompts.items():
        assert p.id == f"mminstruct.{name}" and p.version == EXPECTED[name]
        assert p.system and p.template
        assert FINGERPRINTS[(name, p.version)] == p.fingerprint, f"{name} text changed: bump its version"
        assert p.lineage() == {"prompt_id": p.id, "prompt_version": p.version, "prompt_fingerprint": p.fingerprint}


def test_render_is_strict(prompts):
    p = prompts["fit_check"]
    text = p.render(description="A {weird} description", instruction="Write a poem.")
    assert "A {weird} description" in text and "Write a poem." in text
    with pytest.raises(PromptError, match="missing"):
        p.render(description="x")
    with pytest.raises(PromptError, match="unexpected"):
        p.render(description="x", instruction="y", extra="z")


def test_examples_render_numbered(prompts):
    p = prompts["instruction_generation"]
    out = p.render(description="d", examples=[{"text": "First."}, {"text": "Second."}])
    assert "1. First.\n2. Second." in out


def test_parse_rejects_mismatched_variables():
    raw = {"id": "mminstruct.x", "version": 1, "system": "s", "template": "{a} {b}", "variables": ["a"]}
    with pytest.raises(PromptError, match="declares"):
        parse_prompt(raw, "x")
    with pytest.raises(PromptError, match="id must be"):
        parse_prompt({**raw, "variables": ["a", "b"], "id": "other"}, "x")
    with pytest.raises(PromptError, match="version"):
        parse_prompt({**raw, "variables": ["a", "b"], "version": "1"}, "x")
