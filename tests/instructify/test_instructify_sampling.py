"""The round-batched sampling loop with a scripted `generate`: stop rules, rejection reasons,
fact consumption, ids, and the accounting of every iteration."""

from __future__ import annotations

from collections import defaultdict

import pytest

from visit_assets.lib.ids import content_hash
from visit_assets.lib.instructify.facts import facts_for, make_fact
from visit_assets.lib.instructify.registry import load_registry
from visit_assets.lib.instructify.sampling import (
    SamplingConfig,
    consume_facts,
    conversation_id,
    sample_conversations,
    summarize,
)
from visit_assets.lib.llm import LLMClient, make_backend

THREE = ("id: three_pairs\nversion: 1\nweight: 1\nsystem: Test prompt.\n"
         "template: \"Facts:\\n{facts}\\nWrite three pairs.\"\noutput: {format: qa_blocks, pairs: 3}\n")


@pytest.fixture(scope="module")
def three(tmp_path_factory):
    folder = tmp_path_factory.mktemp("prompts")
    (folder / "three_pairs.yaml").write_text(THREE)
    return load_registry(folder)


def qa(*pairs):
    return "\n\n".join(f"Question: {q}\nAnswer: {a}" for q, a in pairs)


def fact_record(image_id, texts):
    return {"image_id": image_id, "image_key": f"{image_id}.jpg",
            "facts": [make_fact(image_id, "caption", t) for t in texts]}


LONG = [
    "The harbour holds seventeen fishing boats painted blue.",
    "A lighthouse with a red roof stands on the rocky cliff.",
    "Seagulls circle above the wooden pier in grey weather.",
    "An old fisherman mends orange nets beside a crate.",
    "Snow covers distant mountains behind the quiet village.",
    "Yellow kayaks rest upside down on the pebble beach.",
    "A bakery sign reads FRESH BREAD above the doorway.",
    "Children fly a striped kite over the grassy dunes.",
]


def by_image(rows):
    out = defaultdict(list)
    for r in rows:
        out[r["image_id"]].append(r)
    return out


def check_accounting(conversations, attempts):
    """Every iteration is one attempt row; every image one stop row; the numbers chain up."""
    convs = by_image(conversations)
    for image_id, rows in by_image(attempts).items():
        its = [r for r in rows if r["status"] != "stopped"]
        stops = [r for r in rows if r["status"] == "stopped"]
        assert len(stops) == 1 and stops[0] is rows[-1]
        assert [r["iteration"] for r in its] == list(range(len(its))) and stops[0]["iteration"] == len(its)
        accepted = [r for r in its if r["status"] == "accepted"]
        assert [r["conversation_id"] for r in accepted] == [c["conversation_id"] for c in convs.get(image_id, [])]
        for r in its:
            assert r["status"] in ("accepted", "rejected") and r["prompt_id"] and r["generation_cache_key"] is not None
            assert (r["reason"] is None) == (r["status"] == "accepted")
            assert r["facts_before"] - r["facts_remaining"] == len(r["consumed_fact_ids"])
        for a, b in zip(its, its[1:], strict=False):
            assert a["facts_remaining"] == b["facts_before"]
        if its:
            assert stops[0]["facts_remaining"] == its[-1]["facts_remaining"]


def test_round_batching_structure_and_accounting(sample_records, registry, fakes):
    records = [sample_records[k] for k in ("astronaut.jpg", "coffee.jpg", "cameraman.jpg")]
    llm = fakes.LLM()
    convs, attempts = sample_conversations(records, registry, llm, SamplingConfig(), seed=0)
    kinds = llm.kinds()
    assert kinds[0::2] == ["generate"] * len(kinds[0::2]) and kinds[1::2] == ["verify"] * len(kinds[1::2])
    gen_calls = llm.calls[0::2]
    assert len(gen_calls[0]) == 3  # one generation request per image in the first round
    rounds = max(a["iteration"] for a in attempts if a["status"] == "stopped")
    assert len(gen_calls) == rounds
    for n, call in enumerate(gen_calls):  # each round: exactly the images still active
        active = {a["image_id"] for a in attempts if a["status"] != "stopped" and a["iteration"] == n}
        assert {r.tag[0] for r in call} == active and all(r.tag[1] == n for r in call)
    for n, call in enumerate(llm.calls[1::2]):  # one verification request per parsed pair of the round
        expected = sum(len(a["verdicts"]) for a in attempts if a["status"] != "stopped" and a["iteration"] == n)
        assert len(call) == expected
    assert convs and {c["image_id"] for c in convs} == {r["image_id"] for r in records}
    for c in convs:
        turns = c["turns"]
        assert [t["from"] for t in turns] == ["human", "gpt"] * (len(turns) // 2)
        assert turns[0]["value"].startswith("<image>\n")
        assert sum(t["value"].count("<image>") for t in turns) == 1
        assert c["recipe"] == "instructify" and c["model"] == fakes.model.label()
        assert c["prompt_version"] == registry.get(c["prompt_id"]).version
        assert c["prompt_hash"] == registry.get(c["prompt_id"]).text_hash
        assert len(c["pairs"]) == len(turns) // 2 and all(p["verdict"] is True for p in c["pairs"])
    check_accounting(convs, attempts)
    assert {a["reason"] for a in attempts if a["status"] == "stopped"} == {"facts_consumed"}
    s = summarize(convs, attempts)
    assert s["images"] == 3 and s["conversations"] == len(convs) and s["accepted"] == len(convs)


def test_stop_when_facts_consumed(sample_records, registry, fakes):
    rec = sample_records["astronaut.jpg"]
    n = len(facts_for(rec))
    convs, attempts = sample_conversations([rec], registry, fakes.LLM(), SamplingConfig(), seed=0)
    its = [a for a in attempts if a["status"] != "stopped"]
    assert attempts[-1]["reason"] == "facts_consumed"
    assert 1 - its[-1]["facts_remaining"] / n > 0.85
    assert 1 - its[-1]["facts_before"] / n <= 0.85  # it did not stop one iteration early


def test_stop_when_fewer_than_10_characters_remain(three, fakes):
    rec = fact_record("img-short", LONG + ["Cat.", "Mat."])  # 8 of 10 consumable: 80% < 85%
    llm = fakes.LLM(gen=lambda i, it, req: fakes.facts_reply(req, n=2))
    convs, attempts = sample_conversations([rec], three, llm, SamplingConfig(), seed=0)
    assert attempts[-1]["status"] == "stopped" and attempts[-1]["reason"] == "facts_exhausted"
    assert attempts[-1]["facts_remaining"] == 2 and len(convs) == 4
    # nothing worth asking from the start: no LLM call at all
    llm2 = fakes.LLM()
    convs, attempts = sample_conversations([fact_record("tiny", ["Red."])], three, llm2, SamplingConfig(), seed=0)
    assert llm2.calls == [] and convs == []
    assert [(a["status"], a["reason"], a["iteration"]) for a in attempts] == [("stopped", "facts_exhausted", 0)]
    _, attempts = sample_conversations([{"image_id": "none", "image_key": "n.jpg"}], three, llm2, seed=0)
    assert attempts[-1]["reason"] == "no_facts"


def test_stop_after_more_than_max_failures(three, fakes):
    llm = fakes.LLM(gen=lambda i, it, req: "I cannot do that.")
    convs, attempts = sample_conversations([fact_record("img-f", LONG)], three, llm, SamplingConfig(), seed=0)
    assert convs == []
    assert [a["reason"] for a in attempts] == ["unparseable"] * 4 + ["too_many_failures"]
    assert [a["consecutive_failures"] for a in attempts[:4]] == [1, 2, 3, 4]
    # an accepted conversation resets the count
    script = {3}
    llm = fakes.LLM(gen=lambda i, it, req: fakes.facts_reply(req, 1) if it in script else "nothing")
    convs, attempts = sample_conversations([fact_record("img-r", LONG)], three, llm, SamplingConfig(), seed=0)
    assert [a["consecutive_failures"] for a in attempts[:-1]] == [1, 2, 3, 0, 1, 2, 3, 4]
    assert attempts[-1]["reason"] == "too_many_failures" and len(convs) == 1
    _, attempts = sample_conversations([fact_record("img-0", LONG)], three, fakes.LLM(gen=lambda *a: "x"),
                                       SamplingConfig(max_failures=0), seed=0)
    assert len(attempts) == 2


def test_stop_at_max_iterations(three, fakes):
    # answers share no word with any fact: nothing is consumed, every conversation is accepted
    def gen(i, it, req):
        return qa((f"Riddle number {it} one?", "Zzz."), (f"Riddle number {it} two?", "Qqq."))
    convs, attempts = sample_conversations([fact_record("img-m", LONG)], three, fakes.LLM(gen=gen), SamplingConfig(), seed=0)
    assert len(convs) == 10 and attempts[-1]["reason"] == "max_iterations"
    assert all(a["consumed_fact_ids"] == [] for a in attempts)
    convs, attempts = sample_conversations([fact_record("img-m", LONG)], three, fakes.LLM(gen=gen),
                                           SamplingConfig(max_iterations=3), seed=0)
    assert len(convs) == 3 and attempts[-1]["iteration"] == 3
    check_accounting(convs, attempts)


def test_first_pair_failure_drops_conversation_later_failures_drop_pairs(three, fakes):
    def gen(i, it, req):
        return qa((f"First {it}?", "Zzz."), (f"Second {it}?", "Yyy."), (f"Third {it}?", "Xxx."))
    verdicts = {0: ["False", "True", "True"], 1: ["True", "False", "True"], 2: ["Maybe", "True", "True"]}
    llm = fakes.LLM(gen=gen, verify=lambda i, it, j, req: verdicts[it][j])
    convs, attempts = sample_conversations([fact_record("img-v", LONG)], three, llm, SamplingConfig(max_iterations=3),
                                           seed=0)
    assert [a["status"] for a in attempts] == ["rejected", "accepted", "rejected", "stopped"]
    assert attempts[0]["reason"] == "first_qa_failed" and "verdict False" in attempts[0]["detail"]
    assert attempts[2]["reason"] == "first_qa_failed" and "verdict unparseable" in attempts[2]["detail"]
    assert attempts[0]["verdicts"] == [False, True, True] and attempts[2]["verdicts"] == [None, True, True]
    (conv,) = convs
    assert [t["value"] for t in conv["turns"]] == ["<image>\nFirst 1?", "Zzz.", "Third 1?", "Xxx."]
    assert attempts[1]["pairs_kept"] == 2 and "pair dropped (verdict False)" in attempts[1]["detail"]
    # the verifier's own failure counts as an unverified first pair
    llm = fakes.LLM(gen=gen, verify=lambda i, it, j, req: fakes.result("", "error", request=req, error="down"))
    _, attempts = sample_conversations([fact_record("img-e", LONG)], three, llm, SamplingConfig(max_iterations=1), seed=0)
    assert attempts[0]["reason"] == "first_qa_failed" and "verifier error: down" in attempts[0]["detail"]


@pytest.mark.parametrize("reply, reason, kept", [
    (lambda req: "ERROR", "llm_error", 0),
    (lambda req: "", "empty", 0),
    (lambda req: "   ", "empty", 0),
    (lambda req: "Just prose, no labels.", "unparseable", 0),
    (lambda req: "Question: What?", "no_pairs", 0),
    (lambda req: "Question: <question>\nAnswer: <answer>", "no_pairs", 0),
    (lambda req: ("truncated", qa(("One?", "Zzz."), ("Two?", "Yyy."), ("Three?", "Xx"))), None, 2),
    (lambda req: ("truncated", qa(("One?", "Zz"))), "truncated", 0),
    (lambda req: qa(("One?", "A."), ("Two?", "B."), ("Three?", "C."), ("Four?", "D.")), None, 3),
    (lambda req: qa(("Same <image> question?", "A."), ("same   question ", "B.")), None, 1),
])
def test_rejection_reasons_and_caps(three, fakes, reply, reason, kept):
    def gen(i, it, req):
        out = reply(req)
        if out == "ERROR":
            return fakes.result("", "error", request=req, error="connection refused")
        if isinstance(out, tuple):
            return fakes.result(out[1], out[0], request=req)
        return out

    convs, attempts = sample_conversations([fact_record("img-x", LONG)], three, fakes.LLM(gen=gen),
                                           SamplingConfig(max_iterations=1), seed=0)
    first = attempts[0]
    assert first["reason"] == reason and first["pairs_kept"] == kept
    assert len(convs) == (1 if kept else 0)
    if kept:
        assert "<image>" not in "".join(t["value"] for t in convs[0]["turns"][1:])
        assert convs[0]["turns"][0]["value"].count("<image>") == 1


def test_duplicate_questions_removed_and_recorded(three, fakes):
    def gen(i, it, req):
        return qa(("What colour are the boats?", f"Blue {it}."), ("What is on the cliff?", "Zzz."))
    convs, attempts = sample_conversations([fact_record("img-d", LONG)], three, fakes.LLM(gen=gen),
                                           SamplingConfig(max_iterations=2), seed=0)
    assert attempts[0]["status"] == "accepted" and attempts[0]["duplicates"] == []
    assert attempts[1]["status"] == "rejected" and attempts[1]["reason"] == "all_duplicates"
    assert attempts[1]["duplicates"] == ["What colour are the boats?", "What is on the cliff?"]
    assert attempts[1]["verdicts"] == []  # duplicates are never sent to the verifier
    assert summarize(convs, attempts)["duplicates_removed"] == 2


def test_ids_stable_and_independent_of_batch(sample_records, registry, fakes):
    keys = ["astronaut.jpg", "coffee.jpg", "chelsea_cat.jpg", "rocket_launch.jpg"]
    recs = [sample_records[k] for k in keys]
    a, att_a = sample_conversations(recs, registry, fakes.LLM(), seed=7)
    b, att_b = sample_conversations(list(reversed(recs)), registry, fakes.LLM(), seed=7)
    assert a == b and att_a == att_b
    solo, _ = sample_conversations([recs[1]], registry, fakes.LLM(), seed=7)
    assert solo == [c for c in a if c["image_id"] == recs[1]["image_id"]]
    for c in a:
        assert c["conversation_id"] == content_hash(c["image_id"], "instructify", c["prompt_id"], c["prompt_version"],
                                                    fakes.model.label(), 7, c["iteration"])
        assert c["conversation_id"] == conversation_id(c["image_id"], c["prompt_id"], c["prompt_version"],
                                                       fakes.model.label(), 7, c["iteration"])
    assert len({c["conversation_id"] for c in a}) == len(a)
    other, _ = sample_conversations(recs, registry, fakes.LLM(), seed=8)
    assert not {c["conversation_id"] for c in a} & {c["conversation_id"] for c in other}


def test_generation_seed_varies_per_iteration(three, fakes):
    llm = fakes.LLM(gen=lambda *a: "nothing")
    sample_conversations([fact_record("img-s", LONG)], three, llm, seed=0)
    seeds = [c[0].params.seed for c in llm.calls]
    assert len(set(seeds)) == len(seeds)  # a retry after a rejection is not the same (cached) request


def test_lexical_consumption_on_sample(sample_records):
    facts = facts_for(sample_records["astronaut.jpg"])
    used = consume_facts("What names are written on the mission patch?", "Collins and Ashby.", facts, 0.5, 0.2)
    texts = [f.text for f in used]
    assert 'Visible text: "COLLINS ASHBY".' in texts
    assert "What names are written at the top of the round mission patch? Collins and Ashby." in texts
    assert not any(t.startswith("flag") for t in texts)
    # the single best fact is used even below the threshold, nothing when nothing matches
    assert [f.text for f in consume_facts("Is there a flag?", "Yes.", facts, 0.99, 0.2)] == [
        "flag: medium, left; centre (0.10, 0.50), size 0.20 x 1.00"]
    assert consume_facts("Hmm?", "Zzz.", facts, 0.5, 0.2) == []


def test_cited_consumption_with_lexical_fallback(three, fakes):
    rec = fact_record("img-c", LONG)
    def gen(i, it, req):
        return qa((f"Riddle {it}?", "Zzz."),)
    cite = {0: "True\nFacts: 3", 1: "True\nFacts: 42"}
    llm = fakes.LLM(gen=gen, verify=lambda i, it, j, req: cite[it])
    convs, attempts = sample_conversations([rec], three, llm, SamplingConfig(consume="cited", max_iterations=2), seed=0)
    assert convs[0]["pairs"][0]["consumed_by"] == "cited"
    assert convs[0]["consumed_fact_ids"] == [rec["facts"][2].fact_id]
    assert convs[1]["pairs"][0]["consumed_by"] == "lexical" and convs[1]["consumed_fact_ids"] == []
    with pytest.raises(ValueError):
        SamplingConfig(consume="magic")


def test_inputs_checked(three, fakes):
    rec = fact_record("img-i", LONG)
    with pytest.raises(ValueError, match="twice"):
        sample_conversations([rec, rec], three, fakes.LLM(), seed=0)
    with pytest.raises(RuntimeError, match="results for"):
        sample_conversations([rec], three, lambda reqs: [], seed=0)
    as_dicts = {**rec, "facts": [f.as_dict() for f in rec["facts"]]}
    assert (sample_conversations([as_dicts], three, fakes.LLM(), seed=0)
            == sample_conversations([rec], three, fakes.LLM(), seed=0))


def test_echo_client_through_the_loop(sample_records, registry):
    """The real client + cache path with the model-free echo backend: unparseable, fully accounted."""
    client = LLMClient(make_backend("echo"))
    recs = [sample_records["coffee.jpg"], sample_records["grass.jpg"]]
    convs, attempts = sample_conversations(recs, registry, client.generate, SamplingConfig(max_iterations=2), seed=0)
    assert convs == []
    its = [a for a in attempts if a["status"] != "stopped"]
    assert len(its) == 4 and {a["reason"] for a in its} == {"unparseable"}
    assert all(a["model"] == client.identity.label() and len(a["generation_cache_key"]) == 32 for a in its)
    assert client.stats.requests == 4  # two rounds, no verification needed
    check_accounting(convs, attempts)


def test_a_separate_verifier_gets_every_verification_and_nothing_else(sample_records, registry, fakes):
    """The checker role: verification requests go to `verify`, and the rows name its model."""
    from visit_assets.lib.models.identity import ModelIdentity

    checker_model = ModelIdentity(name="checker-70b", weights="c" * 64, kind="llm")
    records = [sample_records[k] for k in ("astronaut.jpg", "coffee.jpg")]
    generator = fakes.LLM()
    checker = fakes.LLM(verify=lambda image_id, it, j, req: fakes.result("True", request=req, model=checker_model))
    convs, attempts = sample_conversations(records, registry, generator, SamplingConfig(), seed=0, verify=checker)
    assert convs and set(generator.kinds()) == {"generate"} and set(checker.kinds()) == {"verify"}
    assert all(c["model"] == fakes.model.label() and c["verifier_models"] == [checker_model.label()] for c in convs)
    same, _ = sample_conversations(records, registry, fakes.LLM(), SamplingConfig(), seed=0)
    assert [c["turns"] for c in same] == [c["turns"] for c in convs]  # who verifies changes no sampling


def test_lanes_run_at_once_and_give_the_rows_of_one_lane(sample_records, registry, fakes):
    """Images split into lanes whose rounds run in threads (so the pipeline's own work overlaps the
    requests of another lane) make exactly the rows of the single-lane loop."""
    import threading

    records = list(sample_records.values())
    reject = lambda image_id, it, j, req: "False" if (len(image_id) + it) % 4 == 0 else "True"  # noqa: E731
    one = sample_conversations(records, registry, fakes.LLM(verify=reject), SamplingConfig(), seed=0)
    lanes = fakes.LLM(verify=reject)
    together = threading.Barrier(3, timeout=30)  # passes only if three lanes have a batch in flight at once
    seen_lock, seen = threading.Lock(), set()

    def generate(requests):
        ids = {r.tag[0] for r in requests}
        with seen_lock:
            lane_start = not ids & seen
            seen.update(ids)
        if lane_start:
            together.wait()
        return lanes(requests)

    three = sample_conversations(records, registry, generate, SamplingConfig(), seed=0, lanes=3)
    assert three == one and len(one[0]) > len(records)
    check_accounting(*three)
    ids = sorted(r["image_id"] for r in records)
    by_lane = [set(ids[i::3]) for i in range(3)]
    assert all(any({r.tag[0] for r in call} <= lane for lane in by_lane) for call in lanes.calls)


def test_a_lane_that_fails_stops_the_others_and_raises(sample_records, registry, fakes):
    import threading

    records = list(sample_records.values())
    first = min(r["image_id"] for r in records)
    raised = threading.Event()

    def gen(image_id, it, req):
        if image_id == first and it == 1:
            raised.set()
            raise RuntimeError("endpoint gone")
        if it == 2:
            raised.wait(30)  # the other lane is mid-round when its neighbour fails
        return fakes.facts_reply(req)

    failing = fakes.LLM(gen=gen)
    with pytest.raises(RuntimeError, match="endpoint gone"):
        sample_conversations(records, registry, failing, SamplingConfig(), seed=0, lanes=2)
    assert raised.is_set() and max(r.tag[1] for call in failing.calls for r in call) <= 2  # no round after it
    with pytest.raises(ValueError, match="lanes"):
        sample_conversations(records, registry, failing, SamplingConfig(), seed=0, lanes=0)


def test_a_type_needing_ocr_is_never_drawn_for_an_image_without_it_and_the_loop_says_why(sample_records, fakes):
    records = list(sample_records.values())
    has_ocr = {r["image_id"] for r in records if any(f.kind == "ocr" for f in facts_for(r))}
    assert has_ocr and len(has_ocr) < len(records)  # the sample has both kinds of image
    _, attempts = sample_conversations(records, load_registry(), fakes.LLM(), seed=0)
    assert {a["image_id"] for a in attempts if a["prompt_id"] == "ocr_reading"} <= has_ocr
    only_ocr = load_registry(weights={k: (1.0 if k == "ocr_reading" else 0) for k in load_registry().ids})
    _, attempts = sample_conversations(records, only_ocr, fakes.LLM(), seed=0)
    stops = {a["image_id"]: a["reason"] for a in attempts if a["status"] == "stopped"}
    assert {i for i, why in stops.items() if why == "no_prompt_type_fits"} >= set(stops) - has_ocr
    assert {a["prompt_id"] for a in attempts if a["status"] != "stopped"} == {"ocr_reading"}
