"""MM-Instruct's stage 1 (lib/mminstruct/examples.py): which images each instruction's examples
answer, the teacher's requests and rows, and how stage 2 uses the kept ones."""

import numpy as np
import pytest

from visit_assets.lib.llm.types import LLMResult
from visit_assets.lib.mminstruct.answer import AnswerItem, pick_examples
from visit_assets.lib.mminstruct.examples import BestImages, bank_from_rows, example_requests, example_row
from visit_assets.lib.models.identity import ModelIdentity

TEACHER = ModelIdentity("teacher-70b", "a" * 12, "llm")


def test_best_images_are_the_most_similar_whatever_the_shard_order():
    rng = np.random.default_rng(0)
    ids = [f"img{i:03d}" for i in range(60)]
    sims = rng.random((60, 4)).astype(np.float32)
    sims[7, 2] = sims[8, 2] = 2.0  # a tie at the top: the lower id first
    chunks = [(ids[i:i + 13], sims[i:i + 13]) for i in range(0, 60, 13)]
    forward, backward = BestImages(4, 3), BestImages(4, 3)
    for chunk in chunks:
        forward.add(*chunk)
    for chunk in reversed(chunks):
        backward.add(*chunk)
    for col in range(4):
        expected = [ids[i] for i in np.argsort(-sims[:, col], kind="stable")[:3]]
        assert [i for i, _ in forward.best(col)] == [i for i, _ in backward.best(col)] == expected
    assert [i for i, _ in forward.best(2)][:2] == ["img007", "img008"]


def test_best_images_with_fewer_images_than_asked_and_bad_shapes():
    best = BestImages(2, 5)
    best.add(["a", "b"], np.array([[0.1, 0.9], [0.2, 0.3]]))
    assert [i for i, _ in best.best(0)] == ["b", "a"] and len(best.best(1)) == 2
    with pytest.raises(ValueError, match="shape"):
        best.add(["c"], np.zeros((1, 3)))
    with pytest.raises(ValueError, match="at least one"):
        BestImages(2, 0)


def _pairs():
    return [{"instruction_id": "ins-1", "instruction": "Write a short poem about this scene.", "image_id": f"img{i}",
             "description": f"A red bus parked beside {i} bicycles on a sunny street.", "similarity": 0.5 - i / 10}
            for i in range(3)]


def test_example_requests_are_seeded_per_pair_and_carry_instruction_and_description():
    jobs = example_requests(_pairs(), seed=0)
    assert len({j.rng_seed for j in jobs}) == 3
    for job, pair in zip(jobs, _pairs(), strict=True):
        user = job.request.messages[-1]["content"]
        assert pair["instruction"] in user and pair["description"] in user and "Example" not in user
        assert job.request.params.seed == job.rng_seed and job.request.tag == ("ins-1", pair["image_id"])
    assert [j.request for j in example_requests(_pairs(), seed=0)] == [j.request for j in jobs]
    assert example_requests(_pairs(), seed=1)[0].rng_seed != jobs[0].rng_seed


def test_example_rows_keep_only_answers_that_pass_the_filters(good_answer):
    job = example_requests(_pairs(), seed=0)[0]
    kept = example_row(job, LLMResult(good_answer, 90, 60, "stop", "ok", model=TEACHER))
    assert kept["kept"] and kept["filter_reason"] is None and kept["model"] == TEACHER.label()
    assert kept["example_id"].startswith("stage1-") and kept["similarity"] == pytest.approx(0.5)
    refused = example_row(job, LLMResult("I'm sorry, but I can't help with that request.", 90, 9, "stop", "ok",
                                         model=TEACHER))
    assert not refused["kept"] and refused["filter_reason"] == "refusal"
    cut = example_row(job, LLMResult(good_answer[:70], 90, 20, "length", "truncated", model=TEACHER))
    assert not cut["kept"]
    other = example_row(job, LLMResult(good_answer, 90, 60, "stop", "ok", model=ModelIdentity("other", "b" * 12)))
    assert other["example_id"] != kept["example_id"]  # the id names the model that wrote it
    assert [e.id for e in bank_from_rows([kept, refused])] == [kept["example_id"]]


def test_stage_two_uses_the_instructions_own_examples_but_never_its_own_image(good_answer, bank):
    rows = [example_row(j, LLMResult(good_answer + f" Number {k}.", 90, 60, "stop", "ok", model=TEACHER))
            for k, j in enumerate(example_requests(_pairs(), seed=0))]
    stage_one = bank_from_rows(rows)
    own = AnswerItem("img0", "ins-1", "Write a short poem about this scene.", "A red bus.")
    chosen, _ = pick_examples(own, bank + stage_one, seed=0)
    assert {e.image_id for e in chosen} == {"img1", "img2"}  # its own image's example left out
    other = AnswerItem("img9", "ins-1", "Write a short poem about this scene.", "A red bus.")
    chosen, _ = pick_examples(other, bank + stage_one, seed=0)
    assert {e.instruction_id for e in chosen} == {"ins-1"}
    few = AnswerItem("img0", "ins-1", "x", "y")  # one example left besides its own: the general bank
    chosen, _ = pick_examples(few, bank + stage_one[:2], seed=0)
    assert all(e.instruction_id is None for e in chosen)
