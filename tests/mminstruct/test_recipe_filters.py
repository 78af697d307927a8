"""Each recipe's answers get its own rules: MM-Instruct's filters (15-word floor included) for
MM-Instruct answers, generic hygiene only for Instructify's verified, often short, answers."""

import pytest

from visit_assets.lib.instructify import sampling
from visit_assets.lib.instructify.parse import parse_qa
from visit_assets.lib.mminstruct import answer
from visit_assets.lib.mminstruct import filters as f

# Instructify replies in the formats its prompt types ask for (multiple_choice, yes_no, short_caption),
# parsed as the sampling loop parses them.
MULTIPLE_CHOICE = "Question: Which colour is the kite?\nA) blue\nB) red\nC) green\nAnswer: B) red"
YES_NO = ("Question: Is the dog black?\nAnswer: No, the dog is brown, not black.\n\n"
          "Question: Is there a kite in the sky?\nAnswer: Yes, a red kite flies above the beach.")
CAPTION = "Question: Write a short caption for this image.\nAnswer: Two children build a sandcastle on a sunny beach."


def _answers(reply: str) -> list[str]:
    return [p.answer for p in parse_qa(reply).pairs]


def test_recipe_names_match_the_rows():
    assert f.MMINSTRUCT == answer.RECIPE and f.INSTRUCTIFY == sampling.RECIPE
    assert set(f.RULES_BY_RECIPE) == {answer.RECIPE, sampling.RECIPE}
    assert all(set(rules) <= set(f.RULES) for rules in f.RULES_BY_RECIPE.values())


@pytest.mark.parametrize("reply", [MULTIPLE_CHOICE, YES_NO, CAPTION])
def test_short_instructify_answers_pass(reply):
    answers = _answers(reply)
    assert answers and all(len(a.split()) < f.MIN_WORDS for a in answers)
    assert f.check_conversation(f.INSTRUCTIFY, answers) is None
    # the same texts as MM-Instruct answers are too short: the floor is MM-Instruct's
    assert f.check_conversation(f.MMINSTRUCT, answers[:1], "stop") == f.TOO_SHORT


def test_one_short_turn_does_not_lose_an_instructify_conversation():
    long = ("The boy on the left holds a bucket while his sister pats the walls of the castle, and the tide "
            "is still far out, so they have plenty of time to finish it before the water comes back.")
    assert f.check_conversation(f.INSTRUCTIFY, [long, "B) red", "No, the dog is brown, not black."]) is None


@pytest.mark.parametrize("text, reason", [
    ("I'm sorry, but I cannot see the image, so I cannot answer.", f.REFUSAL),
    ("As an AI, I cannot tell.", f.REFUSAL),
    ("Yes, according to the facts the dog is brown.", f.SOURCE_LEAK),
    ("The caption says two children are on the beach.", f.SOURCE_LEAK),
    ("No, the kite is red [3].", f.SOURCE_LEAK),
    ("A dog runs runs runs runs across the grass.", f.REPETITION),
    ("", f.EMPTY),
])
def test_instructify_hygiene_still_applies(text, reason):
    assert f.check_conversation(f.INSTRUCTIFY, ["B) red", text]) == reason


def test_no_length_or_mid_sentence_rule_for_instructify():
    cut = "The children build a sandcastle while their dog watches from a little further up the beach and"
    assert f.check_answer(cut, recipe=f.INSTRUCTIFY) is None  # the sampling loop handles truncation itself
    assert f.check_answer(cut, "stop") == f.MID_SENTENCE  # MM-Instruct's rule
    assert f.check_answer("B) red", "length", recipe=f.INSTRUCTIFY) is None


def test_mminstruct_answers_keep_every_rule():
    ten = "Two children build a big sandcastle near the waves."
    assert len(ten.split()) < f.MIN_WORDS
    assert f.check_conversation(f.MMINSTRUCT, [ten], "stop") == f.TOO_SHORT
    assert f.check_answer(ten) == f.TOO_SHORT  # the default recipe is MM-Instruct
    good = ("Two children are building a tall sandcastle near the waves while their golden dog watches "
            "them from a towel, and the late sun turns the whole beach orange.")
    assert f.check_conversation(f.MMINSTRUCT, [good], "stop") is None
    assert f.check_conversation(f.MMINSTRUCT, [good], "length") == f.TRUNCATED


def test_an_unknown_recipe_is_an_error():
    with pytest.raises(ValueError, match="imported"):
        f.check_conversation("imported", ["B) red"])


def test_filter_settings_say_which_rules_applied_to_which_recipe():
    rules = f.filter_settings()["rules_by_recipe"]
    assert "too_short" in rules[f.MMINSTRUCT] and "truncated" in rules[f.MMINSTRUCT]
    assert "too_short" not in rules[f.INSTRUCTIFY] and "truncated" not in rules[f.INSTRUCTIFY]
    assert {"refusal", "repetition", "mentions_source"} <= set(rules[f.INSTRUCTIFY])
    assert f.filter_settings()["min_words"] == f.MIN_WORDS


def test_a_short_refusal_or_source_leak_is_named_as_such_not_as_too_short():
    assert f.check_answer("I'm sorry, but I can't help with that request.") == "refusal"
    assert f.check_answer("Based on the description provided, a cat sits on a sofa.") == "mentions_source_text"


def test_ordinary_talk_of_facts_is_not_a_source_leak():
    assert f.check_answer("The facts of the matter are simple: the cat sat on the warm sofa all afternoon long.") is None
    assert f.check_answer("As fact 2 says, the cat sits on a sofa.", recipe=f.INSTRUCTIFY) == f.SOURCE_LEAK
