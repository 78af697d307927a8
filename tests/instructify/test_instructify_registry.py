"""The prompt registry: files, weights, slot sampling, rendering, version lock."""

from __future__ import annotations

import random
import shutil
from collections import Counter

import pytest

from visit_assets.lib.instructify.registry import (
    DEFAULT_DIR,
    LOCK_FILE,
    RegistryError,
    load_profiles,
    load_registry,
    lock_problems,
    render,
    sample_prompt,
    write_lock,
)

LLAVA = {"llava_conversation": 0.3671, "detailed_description": 0.1456, "complex_reasoning": 0.4873}
EXTRA = {"multiple_choice", "yes_no", "short_caption", "constrained_instruction", "true_false", "fill_in_the_blank",
         "avoidance", "ocr_reading", "grounding"}
NEEDS = {"ocr_reading": ("ocr",), "grounding": ("region",)}  # drawn only while the image has such facts


def test_packaged_types_and_weights(registry):
    assert set(registry.ids) == set(LLAVA) | EXTRA
    for pid, w in LLAVA.items():
        assert registry.get(pid).weight == w
    assert sum(LLAVA.values()) == pytest.approx(1.0)
    for pid in EXTRA:
        assert 0 < registry.get(pid).weight <= 0.05
    for p in registry.prompts:
        assert p.version >= 1 and p.description and p.source and p.output_format == "qa_blocks"


def test_version_lock_is_current(registry):
    assert lock_problems(registry) == []


def test_text_change_without_version_bump_is_caught(tmp_path):
    folder = tmp_path / "prompts"
    shutil.copytree(DEFAULT_DIR, folder)
    f = folder / "yes_no.yaml"
    f.write_text(f.read_text().replace("Only ask about things", "Only ever ask about things"))
    changed = load_registry(folder)
    problems = lock_problems(changed, folder / LOCK_FILE)
    assert problems == ["yes_no: text changed but version is still 1; bump it, then run --lock"]
    f.write_text(f.read_text().replace("version: 1", "version: 2"))
    bumped = load_registry(folder)
    assert "stale" in lock_problems(bumped, folder / LOCK_FILE)[0]
    write_lock(bumped, folder / LOCK_FILE)
    assert lock_problems(bumped, folder / LOCK_FILE) == []
    # weights are not text: changing them needs no bump
    assert lock_problems(load_registry(folder, weights={"yes_no": 0.5}), folder / LOCK_FILE) == []


def test_sampling_follows_weights_chi_square(registry):
    rng = random.Random(12345)
    n = 20000
    counts = Counter(sample_prompt(registry, rng)[0].id for _ in range(n))
    probs = registry.probabilities()
    chi2 = sum((counts[k] - n * p) ** 2 / (n * p) for k, p in probs.items())
    assert chi2 < 31.26, (chi2, counts)  # chi-square, 11 degrees of freedom, p = 0.001
    # the LLaVA types keep their 77k / 58k / 23k proportions among themselves
    llava_total = sum(counts[k] for k in LLAVA)
    for k, w in LLAVA.items():
        assert counts[k] / llava_total == pytest.approx(w, abs=0.015)


def test_weight_override_and_zero_weight(registry):
    reg = load_registry(weights={"yes_no": 0.0, "short_caption": 1.0})
    assert reg.get("short_caption").weight == 1.0
    rng = random.Random(0)
    ids = Counter(sample_prompt(reg, rng)[0].id for _ in range(3000))
    assert ids["yes_no"] == 0 and ids["short_caption"] > ids["detailed_description"]
    only = load_registry(weights={k: (1.0 if k == "multiple_choice" else 0) for k in registry.ids})
    assert {sample_prompt(only, rng)[0].id for _ in range(50)} == {"multiple_choice"}
    with pytest.raises(RegistryError, match="unknown prompt"):
        load_registry(weights={"nope": 1})
    with pytest.raises(RegistryError, match="zero"):
        load_registry(weights={k: 0 for k in registry.ids})
    with pytest.raises(RegistryError):
        load_registry(weights={"yes_no": -1})


def test_llava_profile_is_the_papers_mix_and_nothing_else(registry):
    """LLaVA-Instruct-158K's 77k / 58k / 23k (shared/docs/reference.md), no other type sampled."""
    llava = load_registry(profile="llava")
    assert llava.profile == "llava" and registry.profile == "instructify"
    assert {k: v for k, v in llava.probabilities().items() if v} == pytest.approx(LLAVA)  # the shares sum to 1
    assert {p.id for p in llava.prompts if p.weight == 0} == EXTRA
    rng = random.Random(3)
    assert {sample_prompt(llava, rng)[0].id for _ in range(2000)} == set(LLAVA)
    # the default profile keeps every file's weight: the extra types take their share
    assert sum(registry.probabilities()[k] for k in EXTRA) > 0.05
    assert load_profiles()["instructify"] is None
    # overrides apply over the profile: add one type to the LLaVA mix
    plus = load_registry(profile="llava", weights={"yes_no": 0.1})
    assert plus.get("yes_no").weight == 0.1 and plus.get("multiple_choice").weight == 0
    assert plus.fingerprint() != llava.fingerprint()
    with pytest.raises(RegistryError, match="unknown prompt profile"):
        load_registry(profile="llava-665k")


def test_types_that_need_a_fact_kind_are_drawn_only_when_the_image_has_it(registry, tmp_path):
    assert {p.id: p.requires for p in registry.prompts if p.requires} == NEEDS
    rng = random.Random(5)
    plain = Counter(sample_prompt(registry, rng, {"caption", "qa"})[0].id for _ in range(3000))
    assert not set(plain) & set(NEEDS) and set(plain) == set(LLAVA) | EXTRA - set(NEEDS)
    full = Counter(sample_prompt(registry, rng, {"caption", "object", "region", "ocr"})[0].id for _ in range(3000))
    assert set(NEEDS) <= set(full)
    only_ocr = load_registry(weights={k: (1.0 if k == "ocr_reading" else 0) for k in registry.ids})
    assert only_ocr.drawable({"caption"}) == []
    with pytest.raises(ValueError, match="no prompt type"):
        sample_prompt(only_ocr, rng, {"caption"})
    (tmp_path / "x.yaml").write_text("id: x\nversion: 1\nweight: 1\nsystem: s\ntemplate: '{facts}'\nrequires: [depth]\n")
    with pytest.raises(RegistryError, match="fact kinds"):
        load_registry(tmp_path)


def test_grounding_needs_a_region_not_just_the_object_counts():
    from visit_assets.lib.instructify.facts import features, make_fact

    counts = make_fact("i", "object", "Objects: 2 cats.")
    layout = make_fact("i", "object", "cat 1: large, left; centre (0.25, 0.50), size 0.40 x 0.60")
    assert features([counts]) == {"object"} and features([counts, layout]) == {"object", "region"}
    registry = load_registry()
    assert "grounding" not in {p.id for p in registry.drawable(features([counts]))}
    assert "grounding" in {p.id for p in registry.drawable(features([counts, layout]))}


def test_slots_sampled_in_range_and_seeded(registry):
    conv = registry.get("llava_conversation")
    rng = random.Random(7)
    turns = Counter()
    for _ in range(500):
        p, slots = sample_prompt(registry, rng)
        assert set(slots) == {s.name for s in p.slots}
        if p is conv or p.id == conv.id:
            turns[slots["turns"]] += 1
            assert slots["focus"] in conv.slots[0].values or slots["focus"] in conv.slots[1].values
    assert set(turns) == {2, 3, 4, 5}
    a = [sample_prompt(registry, random.Random(99)) for _ in range(3)]
    assert a[0] == a[1] == a[2]


def test_every_prompt_renders(registry):
    facts = ["A cat on a mat.", "cat: large, centre; centre (0.50, 0.50), size 0.60 x 0.60\n  - collar (inside or on cat)"]
    rng = random.Random(1)
    for p in registry.prompts:
        slots = {s.name: s.sample(rng) for s in p.slots}
        msgs = render(p, facts, slots)
        assert [m["role"] for m in msgs] == ["system", "user"]
        user = msgs[1]["content"]
        assert "[1] A cat on a mat." in user and "[2] cat: large" in user and "\n      - collar" in user
        assert "Question:" in user and "Answer:" in user
        assert "{" not in user.replace("{}", "")
        assert 1 <= p.expected_pairs(slots) <= 5
        assert p.ref() == {"prompt_id": p.id, "prompt_version": p.version, "prompt_hash": p.text_hash}


@pytest.mark.parametrize("body, message", [
    ("id: x\nversion: 1\nweight: 1\nsystem: s\ntemplate: no facts here\n", "facts"),
    ("id: x\nversion: 1\nweight: 1\nsystem: s\ntemplate: '{facts} {turns}'\n", "not slots"),
    ("id: x\nversion: 1\nweight: 1\nsystem: s\ntemplate: '{facts}'\nslots: {turns: {range: [5, 2]}}\n", "range"),
    ("id: x\nversion: 1\nweight: 1\nsystem: s\ntemplate: '{facts}'\noutput: {pairs: turns}\n", "pairs"),
    ("id: x\nversion: 0\nweight: 1\nsystem: s\ntemplate: '{facts}'\n", "version"),
    ("id: y\nversion: 1\nweight: 1\nsystem: s\ntemplate: '{facts}'\n", "file name"),
    ("id: x\nweight: 1\nsystem: s\ntemplate: '{facts}'\n", "missing"),
    ("id: x\nversion: 1\nweight: 1\nsystem: s\ntemplate: '{facts'\n", "bad template"),
    ("[1, 2", "x.yaml"),
])
def test_bad_prompt_files(tmp_path, body, message):
    (tmp_path / "x.yaml").write_text(body)
    with pytest.raises(RegistryError, match=message):
        load_registry(tmp_path)
