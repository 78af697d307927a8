"""Metadata to facts on the real sample metadata: layout tree, fact ids, declarative QA rewrite."""

from __future__ import annotations

import random
import re

import pytest

from visit_assets.lib.ids import content_hash
from visit_assets.lib.instructify.facts import (
    Fact,
    apply_declarative,
    facts_for,
    layout_description,
    layout_parts,
    qa_text,
    qa_to_declarative_requests,
)
from visit_assets.lib.llm import LLMClient, SamplingParams, make_backend


def box(label, x1, y1, x2, y2):
    return {"label": label, "x1": x1, "y1": y1, "x2": x2, "y2": y2}


def test_layout_on_sample_astronaut(sample_records):
    text = layout_description(sample_records["astronaut.jpg"]["boxes"])
    lines = text.splitlines()
    assert lines[0] == "Objects: 1 flag, 1 helmet, 1 mission patch, 1 person, 1 space shuttle model."
    assert lines[2].startswith("- person: large")
    assert lines[3].startswith("  - mission patch (inside or on person): ")
    # the helmet sticks out of the person's box: not nested
    assert any(ln.startswith("- helmet: ") for ln in lines)


def test_layout_on_sample_coffee_and_duplicates(sample_records):
    coffee = layout_description(sample_records["coffee.jpg"]["boxes"])
    assert "  - spoon (inside or on saucer)" in coffee
    assert "- cup: " in coffee  # the cup's top leaves the saucer's box
    hubble = layout_description(sample_records["hubble_deep_field.jpg"]["boxes"])
    # two near-identical "star" boxes (two sources) are one star; plural of galaxy
    assert hubble.splitlines()[0] == "Objects: 2 galaxies, 1 star."
    assert "galaxy 1:" in hubble and "galaxy 2:" in hubble


def test_layout_coordinates_on_grid_and_order_independent(sample_records):
    for rec in sample_records.values():
        boxes = rec["boxes"]
        text = layout_description(boxes)
        for num in re.findall(r"\d+\.\d+", text):
            assert abs(float(num) / 0.05 - round(float(num) / 0.05)) < 1e-9, num
        shuffled = list(boxes)
        random.Random(3).shuffle(shuffled)
        assert layout_description(shuffled) == text
    assert layout_description([]) == ""


def test_many_rule_and_group_inside_a_tray():
    coins = [box("coin", 0.1 + i * 0.08, 0.4, 0.15 + i * 0.08, 0.45) for i in range(9)]
    tray = box("tray", 0.05, 0.3, 0.95, 0.6)
    text = layout_description(coins + [tray])
    assert text.splitlines()[0] == "Objects: many coins, 1 tray."
    assert "  - many coins (inside or on tray): in the centre area" in text
    assert "(9)" not in text and "coin 1" not in text
    eight = layout_description(coins[:8])
    assert eight.startswith("Objects: 8 coins.") and "coin 8:" in eight


def test_containment_threshold_and_no_cycles():
    big = box("table", 0.0, 0.0, 0.5, 0.5)
    inside_90 = box("cup", 0.1, 0.41, 0.2, 0.51)  # exactly 90% of its area inside the table
    inside_80 = box("plate", 0.3, 0.42, 0.4, 0.52)  # 80%
    text = layout_description([big, inside_90, inside_80])
    assert "cup (inside or on table)" in text
    assert "- plate: " in text
    # equal-area boxes of different labels in the same place are not nested in each other
    same = layout_description([box("cat", .1, .1, .3, .3), box("animal", .1, .1, .3, .3)])
    assert "inside" not in same
    # nested three deep: the tightest parent wins
    deep = layout_description([box("room", 0, 0, 1, 1), box("table", .1, .1, .6, .6), box("cup", .2, .2, .3, .3)])
    assert "      - cup (inside or on table)" not in deep and "    - cup (inside or on table)" in deep


def test_facts_for_sample_records(sample_records):
    for rec in sample_records.values():
        facts = facts_for(rec)
        assert facts == facts_for(dict(rec))  # deterministic
        assert len({f.fact_id for f in facts}) == len(facts)
        for f in facts:
            assert f.fact_id == content_hash(rec["image_id"], f.kind, f.text)
            assert f.image_id == rec["image_id"] and f.text
        kinds = [f.kind for f in facts]
        assert kinds == sorted(kinds, key=["caption", "object", "qa", "ocr"].index)
        assert kinds.count("caption") == len(set(rec["captions"]))
        assert kinds.count("qa") == len(rec["qa"])
        assert kinds.count("ocr") == len(rec["ocr"])
        counts, subtrees = layout_parts(rec["boxes"])
        assert kinds.count("object") == (1 + len(subtrees) if counts else 0)
    astro = facts_for(sample_records["astronaut.jpg"])
    qa = [f.text for f in astro if f.kind == "qa"]
    assert qa[3] == "What names are written at the top of the round mission patch? Collins and Ashby."
    assert [f.text for f in astro if f.kind == "ocr"][0] == 'Visible text: "COLLINS ASHBY".'
    rocket = [f.text for f in facts_for(sample_records["rocket_launch.jpg"]) if f.kind == "qa"]
    assert rocket[0].startswith("Describe the scene. A white rocket")  # no "?" after an imperative


def test_qa_text_forms():
    assert qa_text("What colour is it", "red") == "What colour is it? red."
    assert qa_text(" Is it big? ", "Yes!") == "Is it big? Yes!"


def test_declarative_requests_and_apply(sample_records, fakes):
    rec = sample_records["coffee.jpg"]
    facts = facts_for(rec)
    qa_facts = [f for f in facts if f.kind == "qa"]
    reqs = qa_to_declarative_requests(rec, SamplingParams(max_tokens=32))
    assert [r.tag for r in reqs] == [f.fact_id for f in qa_facts]
    assert "Question: What drink is in the cup?" in reqs[0].messages[-1]["content"]
    replies = [
        fakes.result("The cup holds a single espresso with light brown crema.", request=reqs[0]),
        fakes.result("A spoon.\nShort.", request=reqs[1]),  # every line <= 10 characters
        fakes.result("", "error", request=reqs[2], error="boom"),
    ]
    out = apply_declarative(facts, replies)
    new_qa = [f for f in out if f.kind == "qa"]
    assert new_qa[0].text == "The cup holds a single espresso with light brown crema."
    assert new_qa[0].derived_from == qa_facts[0].fact_id and new_qa[0].note == "declarative"
    assert new_qa[0].fact_id == content_hash(rec["image_id"], "qa", new_qa[0].text)
    assert new_qa[0].model == fakes.model.label()
    assert new_qa[1].text == qa_facts[1].text and new_qa[1].note.startswith("fallback: too_short")
    assert new_qa[2].text == qa_facts[2].text and new_qa[2].note == "fallback: llm_error"
    assert [f for f in out if f.kind != "qa"] == [f for f in facts if f.kind != "qa"]
    # applying again leaves rewritten facts alone and still matches the rest by tag
    assert apply_declarative(out, replies[1:]) == out


def test_declarative_cleanup_rules(fakes, sample_records):
    rec = sample_records["chelsea_cat.jpg"]
    facts = facts_for(rec)
    reqs = qa_to_declarative_requests(rec)
    texts = ["**Statement:** The animal in this image is a tabby cat.\nok", "What color are its eyes?"]
    out = apply_declarative(facts, [fakes.result(t, request=r) for t, r in zip(texts, reqs, strict=True)])
    qa = [f for f in out if f.kind == "qa"]
    assert qa[0].text == "The animal in this image is a tabby cat."
    assert qa[1].note == "fallback: still_a_question"
    # positional matching when results carry no tag; a count mismatch is an error
    untagged = [fakes.result(t) for t in texts]
    assert [f.text for f in apply_declarative(facts, untagged)] == [f.text for f in out]
    with pytest.raises(ValueError):
        apply_declarative(facts, untagged[:1])


def test_declarative_through_echo_client(sample_records):
    rec = sample_records["astronaut.jpg"]
    client = LLMClient(make_backend("echo"))
    results = client.generate(qa_to_declarative_requests(rec, SamplingParams(max_tokens=200)))
    out = apply_declarative(facts_for(rec), results)
    qa = [f for f in out if f.kind == "qa"]
    assert len(qa) == 5 and all(f.note == "declarative" and f.model.startswith("echo@") for f in qa)
    assert Fact.from_dict(qa[0].as_dict()) == qa[0]
