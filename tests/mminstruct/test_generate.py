import pytest

from visit_assets.lib.llm import SamplingParams
from visit_assets.lib.mminstruct import generate as g
from visit_assets.lib.mminstruct.generate import (
    COPIED,
    EMPTY,
    GENERIC,
    OK,
    TOO_LONG,
    TOO_SHORT,
    TRUNCATED,
    dedupe_exact,
    instruction_id,
    instruction_requests,
    normalise_instruction,
    parse_instruction,
)


def test_three_distinct_recorded_seeds_per_image(descriptions, seeds):
    jobs = instruction_requests(descriptions, seeds, seed=7)
    assert [j.image_id for j in jobs] == list(descriptions)
    by_id = {s.id: s for s in seeds}
    for j in jobs:
        assert len(j.seed_ids) == 3 and len(set(j.seed_ids)) == 3
        user = j.request.messages[-1]["content"]
        for sid in j.seed_ids:
            assert by_id[sid].text in user
        assert descriptions[j.image_id] in user
        assert j.request.tag == j.image_id and j.request.params.seed == j.rng_seed
        assert j.lineage()["seed_ids"] == list(j.seed_ids)
    assert len({j.seed_ids for j in jobs}) > 1, "different images draw different seeds"


def test_requests_deterministic_and_batch_order_independent(descriptions, seeds):
    a = {j.image_id: j for j in instruction_requests(descriptions, seeds, seed=3)}
    b = {j.image_id: j for j in instruction_requests(list(reversed(list(descriptions.items()))), seeds, seed=3)}
    alone = instruction_requests({"img-dog": descriptions["img-dog"]}, seeds, seed=3)[0]
    shuffled_seeds = instruction_requests(descriptions, list(reversed(seeds)), seed=3)
    for image_id in descriptions:
        assert a[image_id].seed_ids == b[image_id].seed_ids
        assert a[image_id].request == b[image_id].request
    assert alone.request == a["img-dog"].request
    assert [j.seed_ids for j in shuffled_seeds] == [a[i].seed_ids for i in descriptions], "seed file order does not matter"
    other = {j.image_id: j.seed_ids for j in instruction_requests(descriptions, seeds, seed=4)}
    assert other != {i: j.seed_ids for i, j in a.items()}, "the base seed matters"


def test_duplicate_image_ids_rejected(seeds):
    with pytest.raises(ValueError, match="twice"):
        instruction_requests([("a", "x"), ("a", "y")], seeds, seed=0)


@pytest.mark.parametrize("raw, expected", [
    ("Write a short poem about the colours in this image.", "Write a short poem about the colours in this image."),
    ('"Write a short poem about the colours in this image."', "Write a short poem about the colours in this image."),
    ("Instruction: Plan a picnic menu inspired by this image.", "Plan a picnic menu inspired by this image."),
    ("New instruction 4: Plan a picnic menu inspired by this image.", "Plan a picnic menu inspired by this image."),
    ("Sure! Here is a new instruction:\n\nWrite a tweet announcing this scene as breaking news.",
     "Write a tweet announcing this scene as breaking news."),
    ("Sure, here's one: “Write a tweet announcing this scene as breaking news.”",
     "Write a tweet announcing this scene as breaking news."),
    ("1. Write a recipe inspired by this image.\n2. Write a poem.\n3. Tell a joke about it.",
     "Write a recipe inspired by this image."),
    ("**Instruction:** Write a recipe inspired by this image.", "Write a recipe inspired by this image."),
    ("- Write a recipe inspired by this image.", "Write a recipe inspired by this image."),
])
def test_parse_instruction_cleans(raw, expected):
    assert parse_instruction(raw) == (expected, OK)


@pytest.mark.parametrize("raw, status", [
    ("", EMPTY),
    ("   \n  ", EMPTY),
    ("Write a poem.", TOO_SHORT),
    ("Write " + "very " * 100 + "long things.", TOO_LONG),
    ("Describe the image in detail.", GENERIC),
    ("What is in this picture?", GENERIC),
    ("Please describe this photo.", GENERIC),
    ("I'm here to help you craft a rhyming poem inspired by your image.", g.NOT_INSTRUCTION),
    ("To make the instruction more engaging, consider a request that goes beyond questions.", g.NOT_INSTRUCTION),
    ("Here is a task that requires an image that cannot be achieved by anything else.", g.NOT_INSTRUCTION),
    ("Based on the description, write a poem about the children.", g.MENTIONS_SOURCE),
])
def test_parse_instruction_rejects(raw, status):
    assert parse_instruction(raw) == (None, status)


def test_parse_instruction_specific_describe_is_fine():
    text = "Describe the image as if you were a tour guide speaking to excited visitors."
    assert parse_instruction(text) == (text, OK)


def test_parse_instruction_copy_and_truncation():
    ex = ["Compose a haiku that captures the mood of this image."]
    assert parse_instruction("compose a haiku that captures the mood of this image", examples=ex) == (None, COPIED)
    assert parse_instruction("Compose a haiku that captures the mood of the image.", examples=ex) == (None, COPIED)
    assert parse_instruction("Compose a limerick that pokes fun at the people in this image.", examples=ex)[1] == OK
    assert parse_instruction("Write a limerick about the scene in this", finish_reason="length") == (None, TRUNCATED)
    # cut off after a complete first line: the first line is fine
    assert parse_instruction("Write a limerick about the scene in this image.\nAnother one about",
                             finish_reason="length")[1] == OK


def test_normalise_and_exact_dedupe():
    assert normalise_instruction('  "Write a Poem  about this image."  ') == "write a poem about this image"
    assert instruction_id("Write a poem about this image.") == instruction_id("write a poem about this image")
    texts = ["Write a poem about this image.", "Plan a trip inspired by this image.", "write a poem about this image",
             "Write a poem about this image!"]
    groups = dedupe_exact(texts)
    assert len(groups) == 2
    poem = next(grp for grp in groups if 0 in grp.members)
    assert poem.members == (0, 2, 3) and poem.text == "Write a poem about this image!"
    assert [grp.instruction_id for grp in dedupe_exact(list(reversed(texts)))] == [grp.instruction_id for grp in groups]
    assert {grp.text for grp in dedupe_exact(list(reversed(texts)))} == {grp.text for grp in groups}


def test_instruction_row_with_echo_backend(descriptions, seeds):
    from visit_assets.lib.llm import LLMClient, make_backend

    jobs = instruction_requests(descriptions, seeds, seed=0, params=SamplingParams(max_tokens=5))
    results = LLMClient(make_backend("echo")).generate([j.request for j in jobs])
    rows = [g.instruction_row(j, r, {s.id: s for s in seeds}) for j, r in zip(jobs, results, strict=True)]
    assert all(r["llm_status"] == "truncated" and r["status"] == TRUNCATED and r["instruction"] is None for r in rows)
    assert all(r["prompt_version"] == 1 and len(r["seed_ids"]) == 3 for r in rows)
