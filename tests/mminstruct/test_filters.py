import pytest

from visit_assets.lib.mminstruct import filters as f
from visit_assets.lib.mminstruct.filters import check_answer, parse_yes_no, to_llava_turns


def test_good_answers_pass(good_answer, bank):
    assert check_answer(good_answer, "stop") is None
    for ex in bank:  # the shipped in-context examples must be model answers
        assert check_answer(ex.answer, "stop") is None, ex.id
    poem = ("Golden sand and salty air,\nlittle hands build castles there,\nwaves come rolling, soft and slow,\n"
            "summer sun and evening glow")
    assert check_answer(poem + "\n\nA tiny poem for a perfect beach day by the sea.") is None
    assert f.truncated(poem) is None, "short verse lines without punctuation are fine"
    post = "What a day at the beach with the whole gang, the sandcastle turned out amazing and nobody wanted to leave 🏖️"
    assert f.truncated(post) is None
    assert f.truncated("Best day ever at the beach with the kids and the dog!\n#BeachDay #Summer") is None


@pytest.mark.parametrize("answer, finish, reason", [
    ("", "stop", f.EMPTY),
    ("A long answer that was cut off by the token limit in the middle of the", "length", f.TRUNCATED),
    ("The children build a sandcastle while their dog watches from a little further up the beach, and the", "stop",
     f.MID_SENTENCE),
    ("The children build a sandcastle while their dog watches from a little further up the beach and", "stop",
     f.MID_SENTENCE),
    ("The children build a sandcastle while their dog watches from a little further up the beach,", "stop",
     f.MID_SENTENCE),
    ("The children build a sandcastle while their dog watches from a little further up the beach near", "stop",
     f.MID_SENTENCE),
    ("The sun is bright. " * 12, "stop", f.REPETITION),
    ("What a wonderful wonderful wonderful wonderful day at the beach with everyone there together today.", "stop",
     f.REPETITION),
    ("A lovely scene.", "stop", f.TOO_SHORT),
    ("As an AI, I do not have personal feelings, but this scene of children at the beach looks cheerful and relaxing.",
     "stop", f.REFUSAL),
    ("I cannot see the image you have shared, but I would be happy to help with anything else you need today.", "stop",
     f.REFUSAL),
    ("I'm sorry, but I am unable to write a story about this picture because it would not be appropriate for me.",
     "stop", f.REFUSAL),
    ("Based on the description, two children are building a sandcastle on a sunny beach while the sea rolls in nearby.",
     "stop", f.SOURCE_LEAK),
    ("The caption mentions two children, and they seem to be building a big sandcastle on a sunny beach near the waves.",
     "stop", f.SOURCE_LEAK),
    ("According to the text provided, two children are building a big sandcastle on a sunny beach near the waves.",
     "stop", f.SOURCE_LEAK),
])
def test_bad_answers_are_caught(answer, finish, reason):
    assert check_answer(answer, finish) == reason


def test_refusal_rule_is_not_fooled_by_everyday_phrases():
    assert f.refusal("I cannot wait to go back to this beach next summer with the whole family!") is None
    assert f.refusal("I can't help but smile at these two little builders and their enormous castle.") is None


def test_repetition_allows_normal_text(good_answer, bank):
    assert f.repetition(good_answer) is None
    refrain = "Row, row, row your boat\nGently down the stream\nMerrily we go along\nRow, row, row your boat"
    assert f.repetition(refrain) is None
    loop = "\n".join(["Build the castle high and strong"] * 3)
    assert f.repetition(loop) == f.REPETITION


@pytest.mark.parametrize("text, expected", [
    ("yes", True), ("Yes.", True), ("YES!", True), ("No", False), ("no.", False), ("**Yes**", True),
    ("Yes, the instruction fits the image.", True), ("No, it needs things the image lacks.", False),
    ("Answer: yes", True), ("  no\n", False),
    ("Yes and no", None), ("Maybe", None), ("I think yes", None), ("Nope", None), ("yesterday", None),
    ("No idea", None), ("", None), (None, None),
])
def test_parse_yes_no_is_strict(text, expected):
    assert parse_yes_no(text) is expected


def test_to_llava_turns():
    turns = to_llava_turns("Write a haiku about this image.", "Sand walls rise up high.")
    assert turns == [{"from": "human", "value": "<image>\nWrite a haiku about this image."},
                     {"from": "gpt", "value": "Sand walls rise up high."}]
    turns = to_llava_turns("<image> Write a haiku about this image.", "An <image> answer.")
    assert sum(t["value"].count("<image>") for t in turns) == 1 and turns[0]["value"].startswith("<image>\n")
    with pytest.raises(ValueError):
        to_llava_turns("  ", "x")
