"""Instructify's optional layout pass: each layout subtree rewritten as a paragraph by the LLM, kept
only when it names every object and keeps every centre; the stand-in model's competent reply is
kept and its planted faults fall back to the layout text."""

from __future__ import annotations

import random

from visit_assets.lib.instructify.facts import apply_declarative, facts_for, features, gives_region
from visit_assets.lib.instructify.layout_paragraphs import (
    LAYOUT_PROMPT_VERSION,
    apply_layout_paragraphs,
    clean_paragraph,
    is_layout_subtree,
    layout_paragraph_requests,
    object_names,
)
from visit_assets.lib.llm import LLMClient, make_backend
from visit_assets.lib.standin import conversation
from visit_assets.lib.standin.faults import too_short

BOXES = [
    {"label": "bed", "x1": 0.1, "y1": 0.4, "x2": 0.9, "y2": 1.0},
    {"label": "cat", "x1": 0.3, "y1": 0.5, "x2": 0.5, "y2": 0.7},
    {"label": "cat", "x1": 0.6, "y1": 0.5, "x2": 0.8, "y2": 0.7},
    {"label": "lamp", "x1": 0.0, "y1": 0.0, "x2": 0.1, "y2": 0.3},
]
RECORD = {"image_id": "img1", "captions": ["Two cats on a bed."], "boxes": BOXES, "qa": [], "ocr": []}


def _subtrees():
    return [f for f in facts_for(RECORD) if is_layout_subtree(f)]


def _values(request) -> dict[str, str]:
    from visit_assets.lib.standin.recognise import recognise

    return recognise(list(request.messages)).values


def test_one_request_per_subtree_tagged_with_its_fact_and_the_prompt_version_pinned():
    subtrees = _subtrees()
    requests = layout_paragraph_requests(facts_for(RECORD))
    assert len(subtrees) == 2  # the bed (with both cats on it) and the lamp; not the counts line
    assert [r.tag for r in requests] == [f.fact_id for f in subtrees]
    assert object_names(subtrees[0].text) == ["bed", "cat"]
    assert subtrees[0].text in requests[0].messages[-1]["content"]
    assert LAYOUT_PROMPT_VERSION == 1


def test_a_paragraph_naming_every_object_and_centre_replaces_its_subtree(fakes):
    facts = facts_for(RECORD)
    requests = layout_paragraph_requests(facts)
    texts = [conversation.layout_paragraph(_values(r)) for r in requests]  # the stand-in's competent reply
    out = apply_layout_paragraphs(facts, [fakes.result(t, request=r) for t, r in zip(texts, requests, strict=True)])
    rewritten = [f for f in out if f.note == "layout paragraph"]
    assert [f.derived_from for f in rewritten] == [f.fact_id for f in _subtrees()]
    assert all(f.kind == "object" and gives_region(f) for f in rewritten)  # regions kept: grounding still possible
    assert "region" in features(out)
    assert [f for f in out if f.note != "layout paragraph"] == [f for f in facts if not is_layout_subtree(f)]
    assert apply_layout_paragraphs(out, []) == out  # a paragraph is never rewritten again


def test_replies_that_lose_an_object_or_a_centre_keep_the_layout_and_say_why(fakes):
    bed, lamp = _subtrees()
    full = conversation.layout_paragraph({"layout": bed.text})
    assert clean_paragraph(bed, full) == (full, None)
    assert clean_paragraph(bed, "Paragraph: " + full)[0] == full  # a label before the paragraph is dropped
    assert clean_paragraph(bed, full.replace("cat", "animal"))[1] == "omits cat"
    assert clean_paragraph(bed, too_short(full))[1].startswith("omits")  # a planted too_short fault
    assert clean_paragraph(lamp, "A small lamp stands in the top left corner of the room.")[1] == "omits 1 of 1 centres"
    assert clean_paragraph(lamp, "Lamp.")[1].startswith("too_short")
    facts = facts_for(RECORD)
    requests = layout_paragraph_requests(facts)
    out = apply_layout_paragraphs(facts, [fakes.result("I'm sorry, but I can't help with that request.",
                                                        request=requests[0]),
                                          fakes.result("", "error", request=requests[1], error="boom")])
    notes = {f.fact_id: f.note for f in out}
    assert notes[bed.fact_id] == "fallback: omits bed, cat" and notes[lamp.fact_id] == "fallback: llm_error"


def test_qa_and_layout_rewrites_share_one_batch_matched_by_tag():
    """As image_facts sends them: one batch (echo backend), each rewrite finds its own fact."""
    record = {**RECORD, "qa": [{"question": "How many cats are there?", "answer": "two"}]}
    facts = facts_for(record)
    from visit_assets.lib.instructify.facts import qa_to_declarative_requests

    requests = qa_to_declarative_requests(record) + layout_paragraph_requests(facts)
    results = LLMClient(make_backend("echo")).generate(requests)
    out = apply_layout_paragraphs(apply_declarative(facts, results), results)
    assert {f.note for f in out if f.kind == "qa"} == {"declarative"}
    # echo repeats the prompt, which holds the layout: kept, since it names every object and centre
    assert sum(f.note == "layout paragraph" for f in out) == 2


def test_the_stand_in_sees_the_same_scene_in_paragraphs_and_its_pairs_still_verify(fakes):
    """With depths on the boxes, and with each layout subtree rewritten as the stand-in's paragraph,
    the stand-in (the rehearsal's model) sees the same things, places and regions, and every
    conversation it writes from the paragraphs verifies True against them."""
    from visit_assets.lib.instructify.parse import parse_qa
    from visit_assets.lib.instructify.registry import format_facts, load_registry, render
    from visit_assets.lib.instructify.sampling import VERIFY_PROMPT
    from visit_assets.lib.standin.faults import FaultPlan
    from visit_assets.lib.standin.replies import reply
    from visit_assets.lib.standin.scene import scene_from_facts

    clean = FaultPlan({})
    deep = {**RECORD, "boxes": [{**b, "depth": d} for b, d in zip(BOXES, (0.8, 0.5, 0.5, 0.1), strict=True)]}
    for record in (RECORD, deep):
        facts = facts_for(record)
        requests = layout_paragraph_requests(facts)
        replies = [fakes.result(reply({"messages": list(r.messages)}, clean).text, request=r) for r in requests]
        rewritten = apply_layout_paragraphs(facts, replies)
        assert sum(f.note == "layout paragraph" for f in rewritten) == len(requests) > 0  # every clean reply kept
        assert scene_from_facts(format_facts(rewritten)).things == scene_from_facts(format_facts(facts)).things
        verified = 0
        for prompt in load_registry().prompts:
            slots = {s.name: s.sample(random.Random(0)) for s in prompt.slots}
            for pair in parse_qa(reply({"messages": render(prompt, rewritten, slots), "seed": 0}, clean).text).pairs:
                values = {"facts": format_facts(rewritten), "question": pair.question, "answer": pair.answer}
                verdict = reply({"messages": VERIFY_PROMPT.messages(values, strip=False)}, clean).text
                assert verdict.startswith("True"), (prompt.id, pair, verdict)
                verified += 1
        assert verified >= len(load_registry().prompts)  # every type wrote at least one pair on average
