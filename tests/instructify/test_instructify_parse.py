"""The reply parser on many hand-written replies, and the strict verdict parse."""

from __future__ import annotations

import pytest

from visit_assets.lib.instructify.parse import parse_fact_refs, parse_qa, parse_verdict

CAT = [("What is it?", "A cat.")]
TWO = [("What is it?", "A cat."), ("Where is it?", "On a mat.")]

REPLIES = [
    ("Question: What is it?\nAnswer: A cat.", CAT, "ok"),
    ("question: What is it?\nanswer: A cat.", CAT, "ok"),
    ("QUESTION: What is it?\nANSWER: A cat.", CAT, "ok"),
    ("Q: What is it?\nA: A cat.", CAT, "ok"),
    ("Q1: What is it?\nA1: A cat.\nQ2: Where is it?\nA2: On a mat.", TWO, "ok"),
    ("Question 1: What is it?\nAnswer 1: A cat.\n\nQuestion 2: Where is it?\nAnswer 2: On a mat.", TWO, "ok"),
    ("Question #1: What is it?\nAnswer #1: A cat.", CAT, "ok"),
    ("**Question:** What is it?\n**Answer:** A cat.", CAT, "ok"),
    ("**Question 1:** What is it?\n**Answer 1:** A cat.\n**Question 2:** Where is it?\n**Answer 2:** On a mat.", TWO, "ok"),
    ("**Question**: What is it?\n**Answer**: A cat.", CAT, "ok"),
    ("*Question:* What is it?\n*Answer:* A cat.", CAT, "ok"),
    ("__Question:__ What is it?\n__Answer:__ A cat.", CAT, "ok"),
    ("Question: Fill in the blank: A ___ on a mat.\nAnswer: A cat on a mat.",
     [("Fill in the blank: A ___ on a mat.", "A cat on a mat.")], "ok"),  # a blank is not bold markup
    ("1. Question: What is it?\n   Answer: A cat.\n2. Question: Where is it?\n   Answer: On a mat.", TWO, "ok"),
    ("- Question: What is it?\n- Answer: A cat.", CAT, "ok"),
    ("### Question 1\u00a0:\nWhat is it?\n### Answer 1:\nA cat.", CAT, "ok"),
    ("### Question 1:\nWhat is it?\n### Answer 1:\nA cat.", CAT, "ok"),
    ("Sure! Here is a conversation about the image.\n\nQuestion: What is it?\nAnswer: A cat.", CAT, "ok"),
    ("Question: What is it? Answer: A cat.", CAT, "ok"),
    ("Question: What is it? Answer: A cat. Question: Where is it? Answer: On a mat.", TWO, "ok"),
    ("Question: What is it?\nAnswer: A cat.\n---\nQuestion: Where is it?\nAnswer: On a mat.", TWO, "ok"),
    ("Human: What is it?\nGPT: A cat.", CAT, "ok"),
    ("User: What is it?\nAssistant: A cat.", CAT, "ok"),
    ("Question: What is it?\nAnswer: \"A cat.\"", CAT, "ok"),
    ("Question：What is it?\nAnswer：A cat.", CAT, "ok"),
    ("  Question:   What is it?  \n  Answer:   A cat.  \n\n\n", CAT, "ok"),
    ("Question: What is it?\nAnswer: A cat.\nQuestion: Where is it?", CAT, "partial"),
    ("Question: What is it?\nAnswer: A cat.\nAnswer: A dog.", CAT, "partial"),
    ("Answer: A cat.\nQuestion: What is it?\nAnswer: A cat.", CAT, "partial"),
    ("Question: <the question>\nAnswer: <your answer>\nQuestion: What is it?\nAnswer: A cat.", CAT, "partial"),
    ("Question: <the question>\nAnswer: <your answer>", [], "no_pairs"),
    ("Question: What is it?", [], "no_pairs"),
    ("Question:\nAnswer:", [], "no_pairs"),
    ("The image shows a cat on a mat.", [], "unparseable"),
    ("A cat. Another answer follows.", [], "unparseable"),
    ("", [], "empty"),
    ("   \n  ", [], "empty"),
    (None, [], "empty"),
]


@pytest.mark.parametrize("text, pairs, status", REPLIES)
def test_parse_qa(text, pairs, status):
    result = parse_qa(text)
    assert [(p.question, p.answer) for p in result.pairs] == pairs
    assert result.status == status
    assert bool(result.problems) == (status != "ok")


def test_multiline_answers_and_options_stay_together():
    r = parse_qa("Question: Which colour is the cup?\nA) red\nB) blue\nC) white\nAnswer: C) white\n\n"
                 "Question: Describe it.\nAnswer: It has:\n- a handle\n- a red saucer\n\nIt is small.")
    assert r.status == "ok"
    assert r.pairs[0].question == "Which colour is the cup?\nA) red\nB) blue\nC) white"
    assert r.pairs[0].answer == "C) white"
    assert r.pairs[1].answer == "It has:\n- a handle\n- a red saucer\n\nIt is small."


def test_mid_sentence_label_words_do_not_split():
    r = parse_qa("Question: What is the answer: red or blue?\nAnswer: The answer: red, as in question: one.")
    assert [(p.question, p.answer) for p in r.pairs] == [("What is the answer: red or blue?",
                                                          "The answer: red, as in question: one.")]


@pytest.mark.parametrize("text, verdict", [
    ("True", True), ("False", False), ("true", True), ("FALSE", False), ("True.", True), ("False.", False),
    ("**True**", True), ("`False`", False), ('"True"', True), ("[True]", True), ("(False)", False),
    ("Verdict: True", True), ("Answer: False", False), ("verdict - true", True),
    ("True\nFacts: 1, 2", True), ("False - the answer says red but the cup is white.", False),
    ("\n\n  True  \n", True), ("True, because fact 2 says so.", True),
    ("True or False", None), ("true/false", None), ("Yes", None), ("No", None), ("Correct", None),
    ("It is true.", None), ("Trueish", None), ("", None), (None, None), ("Facts: 1\nTrue", None),
    ("The answer is False", None), ("Tru", None),
])
def test_parse_verdict_is_strict(text, verdict):
    assert parse_verdict(text) is verdict


@pytest.mark.parametrize("text, refs", [
    ("True\nFacts: 1, 3", [1, 3]), ("True\nFacts: [2]", [2]), ("True\n**Facts:** 3, 3, 1", [1, 3]),
    ("True\nSupporting facts: 2 and 4", [2, 4]), ("True\nFacts: 9, 2", [2]), ("True\nFacts: none", []),
    ("True\nFacts: 9", None), ("True", None), ("", None),
])
def test_parse_fact_refs(text, refs):
    assert parse_fact_refs(text, 4) == refs
