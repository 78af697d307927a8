import pytest

from visit_assets.lib.llm import LLMClient, make_backend
from visit_assets.lib.llm.types import LLMResult
from visit_assets.lib.mminstruct.answer import (
    AnswerExample,
    answer_requests,
    answer_row,
    examples_version,
    fit_requests,
    fit_row,
    load_answer_examples,
    pick_examples,
)


def test_example_bank_shipped(bank):
    assert len(bank) >= 4 and len({e.id for e in bank}) == len(bank)
    assert examples_version(bank) == examples_version(list(reversed(bank)))


def test_answer_requests_two_seeded_examples(answer_items, bank):
    jobs = answer_requests(answer_items, bank, seed=1)
    by_id = {e.id: e for e in bank}
    for item, job in zip(answer_items, jobs, strict=True):
        assert len(job.example_ids) == 2 and len(set(job.example_ids)) == 2
        user = job.request.messages[-1]["content"]
        assert item.instruction in user and item.description in user
        for eid in job.example_ids:
            assert by_id[eid].answer in user
        assert "description" not in job.request.messages[0]["content"].split("Never refer to the description")[0]
        assert job.request.tag == (item.image_id, item.instruction_id) and job.request.params.seed == job.rng_seed
    again = answer_requests(list(reversed(answer_items)), bank, seed=1)
    assert [j.request for j in again] == [j.request for j in reversed(jobs)]


def test_instruction_specific_examples_preferred(answer_items, bank):
    item = answer_items[0]
    specific = [AnswerExample(f"spec-{i}", item.instruction, "d", "a", instruction_id=item.instruction_id) for i in range(3)]
    chosen, _ = pick_examples(item, bank + specific, seed=0)
    assert {e.id for e in chosen} <= {e.id for e in specific}
    chosen, _ = pick_examples(answer_items[1], bank + specific, seed=0)
    assert not {e.id for e in chosen} & {e.id for e in specific}


def test_bad_example_bank_rejected(tmp_path):
    p = tmp_path / "ex.yaml"
    p.write_text("examples:\n  - {id: a, instruction: x, description: y, answer: z}\n"
                 "  - {id: a, instruction: x, description: y, answer: ''}\n")
    with pytest.raises(ValueError, match="duplicate id"):
        load_answer_examples(p)


def test_answer_and_fit_rows(answer_items, bank, good_answer):
    job = answer_requests(answer_items[:1], bank, seed=0)[0]
    row = answer_row(job, LLMResult(good_answer, 100, 60, "stop", "ok"))
    assert row["kept"] and row["filter_reason"] is None and row["example_ids"] == list(job.example_ids)
    row = answer_row(job, LLMResult(good_answer[:80], 100, 20, "length", "truncated"))
    assert row["filter_reason"] == "truncated" and not row["kept"]
    fit = fit_requests(answer_items[:1])[0]
    assert fit.request.params.temperature == 0
    assert fit_row(fit, LLMResult("Yes.", 50, 2, "stop", "ok"))["fits"] is True
    assert fit_row(fit, LLMResult("Possibly", 50, 2, "stop", "ok"))["fits"] is None


def test_echo_backend_accounting(answer_items, bank):
    client = LLMClient(make_backend("echo"))
    jobs = answer_requests(answer_items, bank, seed=0)
    results = client.generate([j.request for j in jobs] + [jobs[0].request])
    assert len(results) == 4 and client.last_stats.deduplicated == 1 and client.last_stats.sent == 3
    rows = [answer_row(j, r) for j, r in zip(jobs, results[:len(jobs)], strict=True)]  # the 4th: jobs[0] again
    assert all(r["filter_reason"] is not None for r in rows), "echo text is never data"
