import math

import pytest

from visit_assets.lib.selection.pairwise import (
    PAIRWISE_PROMPT_ID,
    PAIRWISE_PROMPT_VERSION,
    pairwise_messages,
    parse_preference,
    win_tie_lose,
)


def test_pairwise_messages():
    msgs = pairwise_messages("What is shown?", "A dog.", "A cat.")
    assert [m["role"] for m in msgs] == ["system", "user"]
    body = msgs[1]["content"]
    assert body.index("A dog.") < body.index("A cat.") and "Verdict: A" in body
    assert "Description of the image" not in body
    with_ctx = pairwise_messages("What is shown?", "A dog.", "A cat.", image_context="A dog on grass.")
    assert "A dog on grass." in with_ctx[1]["content"]
    assert PAIRWISE_PROMPT_ID and PAIRWISE_PROMPT_VERSION


@pytest.mark.parametrize("reply,verdict", [
    ("Verdict: A", "A"), ("B is more detailed.\nVerdict: B", "B"), ("**Verdict:** tie", "tie"),
    ("Final verdict: Answer A", "A"), ("The verdict is a tie.", "tie"), ("Verdict = B", "B"),
    ("[[A]]", "A"), ("[[B]]", "B"), ("[[C]]", "tie"), ("A", "A"), ("B.", "B"), ("**A**", "A"),
    ("Tie", "tie"), ("tie!", "tie"), ("Draw", "tie"), ("Assistant B", "B"),
    ("Answer A is better than answer B.", "A"), ("Response B is superior: it names the sign.", "B"),
    ("Verdict: A\nI stand by it.\nVerdict: A", "A"),
])
def test_parse_preference_accepts(reply, verdict):
    assert parse_preference(reply) == verdict


@pytest.mark.parametrize("reply", [
    None, "", "   ", "Verdict: A\nVerdict: B", "Both are good.", "I prefer neither.", "a", "verdict: a",
    "End with `Verdict: A`, `Verdict: B` or `Verdict: tie`.", "Answer A is better. Answer B is better.",
    "Verdict: C", "[[A]] [[B]]", "The answers are equal in some ways", "AB", "Verdict:", "Option 1",
])
def test_parse_preference_rejects(reply):
    assert parse_preference(reply) is None


def test_win_tie_lose_paper_rule():
    # ours is A in the first order and B in the second
    ab = ["A", "A", "tie", "A", "tie", "B", "B", "B", None, "A"]
    ba = ["B", "tie", "tie", "A", "B", "A", "tie", "B", "B", None]
    outcomes, counts = win_tie_lose(ab, ba)
    assert outcomes == ["win", "win", "tie", "tie", "win", "lose", "lose", "tie", "invalid", "invalid"]
    # row 3: A then A = won once (first order) and lost once (second): position bias -> tie
    assert counts == {"n": 10, "win": 3, "tie": 3, "lose": 2, "invalid": 2, "win_or_tie_rate": 6 / 8}


def test_win_tie_lose_strict_rule():
    ab = ["A", "A", "tie", "B", "B"]
    ba = ["B", "tie", "tie", "A", "tie"]
    outcomes, counts = win_tie_lose(ab, ba, rule="strict")
    assert outcomes == ["win", "tie", "tie", "lose", "tie"]
    assert counts["win"] == 1 and counts["tie"] == 3 and counts["lose"] == 1


def test_win_tie_lose_errors_and_empty():
    outcomes, counts = win_tie_lose([], [])
    assert outcomes == [] and counts["n"] == 0 and math.isnan(counts["win_or_tie_rate"])
    with pytest.raises(ValueError):
        win_tie_lose(["A"], [])
    with pytest.raises(ValueError):
        win_tie_lose(["A"], ["X"])
    with pytest.raises(ValueError):
        win_tie_lose(["A"], ["B"], rule="majority")
