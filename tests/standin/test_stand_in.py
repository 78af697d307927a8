"""The stand-in model as a test instrument: it recognises every product prompt from the prompt
files, answers grounded in the facts, plants faults deterministically, and is never real."""

from __future__ import annotations

import json
import random
import re
from collections import Counter

import httpx
import pytest

from visit_assets.lib.instructify.facts import facts_for
from visit_assets.lib.instructify.parse import parse_qa
from visit_assets.lib.instructify.registry import format_facts, load_registry, render
from visit_assets.lib.instructify.sampling import VERIFY_PROMPT
from visit_assets.lib.llm import LLMClient, LLMRequest
from visit_assets.lib.llm.openai_backend import OpenAIBackend
from visit_assets.lib.llm.types import OK, SamplingParams
from visit_assets.lib.mminstruct.answer import fit_requests
from visit_assets.lib.mminstruct.cluster import merge_requests
from visit_assets.lib.prompts import load_prompts, prompt_dir
from visit_assets.lib.standin import STAND_IN_MODEL
from visit_assets.lib.standin.faults import FAULTS, ROLE_FAULTS, FaultPlan
from visit_assets.lib.standin.recognise import ROLES, recognise, template_pattern
from visit_assets.lib.standin.replies import reply
from visit_assets.lib.standin.server import StandInServer

CAT = {"image_id": "cat", "captions": ["A close-up of a tabby cat's face with green eyes and a pink nose.",
                                       "A striped cat stares past the camera."],
       "boxes": [{"label": "cat", "x1": 0, "y1": 0, "x2": .85, "y2": 1},
                 {"label": "eye", "x1": .3, "y1": .3, "x2": .4, "y2": .5},
                 {"label": "eye", "x1": .65, "y1": .35, "x2": .75, "y2": .55},
                 {"label": "bowl", "x1": .0, "y1": .8, "x2": .1, "y2": .9}],
       "qa": [{"question": "What color are its eyes?", "answer": "Yellowish green"}], "ocr": ["MEOW"]}
CLEAN = FaultPlan({})


def _verify(facts, question: str, answer: str) -> str:
    values = {"facts": format_facts(facts), "question": question, "answer": answer}
    return reply({"messages": VERIFY_PROMPT.messages(values, strip=False)}, CLEAN).text


def test_every_product_prompt_is_recognised_with_its_values():
    facts = facts_for(CAT)
    for prompt in load_registry().prompts:
        slots = {s.name: s.sample(random.Random(3)) for s in prompt.slots}
        got = recognise(render(prompt, facts, slots))
        assert (got.role, got.prompt_id) == ("generate", prompt.id)
        assert got.values["facts"] == format_facts(facts) and all(got.values[k] == str(v) for k, v in slots.items())
    for (family, stem), role in ROLES.items():
        p = load_prompts(prompt_dir(family))[stem]
        values = {v: (f"value of {v}" if v != "examples" else [{k: f"{k} {i}" for k in p.example_variables} for i in (1, 2)])
                  for v in p.variables}
        got = recognise(p.messages(values))
        assert (got.role, got.prompt_id) == (role, p.id)
        assert all(got.values[v] == values[v] for v in p.variables if v != "examples")


def test_a_template_becomes_a_pattern_with_repeated_fields():
    pattern = template_pattern('Q: "{request}"\nfacts {facts}\nQuestion: {request}')
    assert pattern.fullmatch('Q: "a b"\nfacts x\ny\nQuestion: a b').group("facts") == "x\ny"
    assert pattern.fullmatch('Q: "a b"\nfacts x\nQuestion: other') is None


def test_an_unknown_prompt_gets_400_and_is_logged():
    with StandInServer() as server:
        r = httpx.post(server.base_url + "/chat/completions",
                       json={"model": STAND_IN_MODEL, "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 400 and "not one of the product's prompts" in r.json()["error"]["message"]
        assert server.log[-1]["status"] == 400


def test_it_refuses_to_answer_under_another_model_name():
    """Its replies must never be recorded as a real model's (weights `stand-in` follow its name)."""
    messages = VERIFY_PROMPT.messages({"facts": "[1] A cat.", "question": "Is it a cat?", "answer": "Yes."}, strip=False)
    with StandInServer() as server:
        r = httpx.post(server.base_url + "/chat/completions", json={"model": "Qwen2.5-72B-Instruct", "messages": messages})
        assert r.status_code == 400 and f"VISIT_LLM_SERVED_MODEL={STAND_IN_MODEL}" in r.json()["error"]["message"]
        assert not server.answered


def test_every_prompt_type_gets_grounded_pairs_that_verify_true_and_a_planted_claim_false():
    facts = facts_for(CAT)
    for prompt in load_registry().prompts:
        for k in range(3):
            slots = {s.name: s.sample(random.Random(k)) for s in prompt.slots}
            text = reply({"messages": render(prompt, facts, slots), "seed": k}, CLEAN).text
            pairs = parse_qa(text).pairs
            assert 1 <= len(pairs) <= prompt.expected_pairs(slots), (prompt.id, text)
            for p in pairs:
                assert _verify(facts, p.question, p.answer).startswith("True\nFacts: "), (prompt.id, p)
    planted = reply({"messages": render(load_registry().get("short_caption"), facts, {"request": "Caption it."}), "seed": 1},
                    FaultPlan({"unsupported": 1.0}))
    pair = parse_qa(planted.text).pairs[0]
    assert planted.entry["pairs"][0]["planted"] and _verify(facts, pair.question, pair.answer) == "False\nFacts: none"
    # absence is a claim too: "no cat" is false for this image, "no giraffe" is true
    assert _verify(facts, "Is there a cat?", "No, there is no cat in the image.").startswith("False")
    assert _verify(facts, "Is there a giraffe?", "No, there is no giraffe in the image.").startswith("True")
    # a numbered list's item numbers are not counts; a count the facts do not give is still unsupported
    listed = "1. A striped cat stares past the camera.\n2. A close-up of a tabby cat's face with green eyes and a pink nose."
    assert _verify(facts, "List what you see, numbered.", listed).startswith("True")
    assert _verify(facts, "How many cats?", "There are 3 cats.").startswith("False")


def test_the_instructify_types_read_as_their_kind():
    """Each type's shape, not only grounded pairs: what a competent model writes for that type."""
    facts = facts_for(CAT)

    def pairs(prompt_id, turns=3):
        prompt = load_registry().get(prompt_id)
        slots = {s.name: s.sample(random.Random(0)) for s in prompt.slots} | {"turns": turns}
        return parse_qa(reply({"messages": render(prompt, facts, slots), "seed": 2}, CLEAN).text).pairs

    answers = [p.answer.split(",")[0] for p in pairs("true_false", 4)]
    assert set(answers) == {"True", "False"}
    assert all("___" in p.question and "___" not in p.answer for p in pairs("fill_in_the_blank"))
    assert all(p.answer.startswith("There is no ") for p in pairs("avoidance", 2))
    assert [p.answer for p in pairs("ocr_reading", 1)] == ['The writing reads "MEOW".']
    regions = [p.answer for p in pairs("grounding")]
    assert regions and all(re.search(r"centre \(0\.\d+, 0\.\d+\), size 0\.\d+ x \d\.\d+", a) for a in regions)
    assert any(a in f.text for a in [r.split(": ", 1)[1].rstrip(".") for r in regions] for f in facts)


def test_mminstruct_merge_and_fit_are_competent():
    cluster = _cluster(["Write a four-line poem inspired by the cat in this image.",
                        "Write a four-line poem inspired by the boat in this image."])
    merged = reply({"messages": list(merge_requests([cluster])[0].request.message_list())}, CLEAN).text
    assert merged == "Write a four-line poem inspired by the main subject of this image."
    no_text = "Captions:\n- A cat on a sofa.\n\nObjects (coarse position and size in the image):\n- 1 cat: centre (large)"
    ask = "Transcribe the writing visible in this image and explain what it tells us."
    jobs = fit_requests([{"image_id": "i", "instruction_id": "x", "description": d, "instruction": ask}
                         for d in (no_text, no_text + '\n\nText visible in the image:\n- "SALE"')])
    assert [reply({"messages": list(j.request.message_list())}, CLEAN).text for j in jobs] == ["no", "yes"]


def _cluster(texts):
    from visit_assets.lib.mminstruct.cluster import Cluster

    return Cluster(cluster_id="c", label=0, member_ids=tuple(f"m{i}" for i in range(len(texts))), member_texts=tuple(texts),
                   distances=tuple(0.0 for _ in texts))


def test_faults_are_deterministic_per_request_and_near_their_rates():
    plan = FaultPlan({"unsupported": 0.2, "empty": 0.1, "server_error": 0.1}, seed=7)
    keys = [f"k{i}" for i in range(4000)]
    got = Counter(plan.content("generate", k) for k in keys)
    assert abs(got["unsupported"] / 4000 - 0.2) < 0.03 and abs(got["empty"] / 4000 - 0.1) < 0.025
    assert [plan.content("generate", k) for k in keys[:50]] == [plan.content("generate", k) for k in keys[:50]]
    assert all(plan.content("judge", k) is None for k in keys[:200])  # a judge is never given an unsupported claim
    assert set(f for faults in ROLE_FAULTS.values() for f in faults) <= set(FAULTS)
    with pytest.raises(ValueError, match="unknown faults"):
        FaultPlan({"typo": 0.1})


def test_a_planted_server_error_is_retried_and_answered_once(tmp_path):
    with StandInServer(FaultPlan({"server_error": 1.0}), log_path=tmp_path / "log.jsonl") as server:
        backend = OpenAIBackend([server.base_url], STAND_IN_MODEL, backoff_base_s=0.01, max_retries=2)
        request = VERIFY_PROMPT.request(facts="[1] A cat.", question="Is it a cat?", answer="Yes, it is a cat.",
                                        params=SamplingParams(max_tokens=24))
        result = LLMClient(backend).generate([request])[0]
        assert result.status == OK and result.text.startswith("True")
        assert list(server.attempts.values()) == [2] and list(server.answered.values()) == [1]
        logged = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
        assert [e["status"] for e in logged] == [503, 200]
        assert backend.identity.weights == "stand-in" and not backend.identity.is_real


def test_a_reply_longer_than_max_tokens_is_cut_with_finish_reason_length():
    prompt = load_registry().get("detailed_description")
    body = {"messages": render(prompt, facts_for(CAT), {"request": "Describe it.", "length": "one rich paragraph"}),
            "max_tokens": 8}
    r = reply(body, CLEAN)
    assert r.finish_reason == "length" and len(r.text.split()) == 8 and r.entry["cut_at_max_tokens"]


def test_serving_speed_per_request_and_shared():
    from visit_assets.lib.standin.server import pace

    assert pace(100, now=0.0, next_free=0.0, tokens_per_s=50, total_tokens_per_s=0) == (2.0, 0.0)
    # three 100-token replies arriving together on a 200 tok/s server with 50 tok/s per request:
    free, delays = 0.0, []
    for _ in range(3):
        d, free = pace(100, now=0.0, next_free=free, tokens_per_s=50, total_tokens_per_s=200)
        delays.append(d)
    assert delays == [2.0, 2.0, 2.0] and free == 1.5
    d, free = pace(400, now=0.0, next_free=free, tokens_per_s=1000, total_tokens_per_s=200)
    assert (d, free) == (3.5, 3.5)  # queued behind the shared budget


def test_its_busy_time_is_the_shared_decoders_time_for_the_replies_it_sent():
    """The denominator of a pipeline's overhead: sum of reply tokens / total_tokens_per_s."""
    facts = facts_for(CAT)
    reqs = [VERIFY_PROMPT.request(facts=format_facts(facts), question=f"Is cat {i} tabby?", answer="Yes.",
                                  params=SamplingParams(max_tokens=24)) for i in range(20)]
    with StandInServer(CLEAN, total_tokens_per_s=4000, max_concurrency=8) as server:
        backend = OpenAIBackend(server.base_url, STAND_IN_MODEL, concurrency=8, max_retries=0)
        results = LLMClient(backend).generate(reqs)
        backend.close()
        stats = httpx.get(server.base_url.replace("/v1", "/stand-in/stats")).json()
    tokens = sum(len(r.text.split()) for r in results)
    assert stats["replies"] == 20 and stats["output_tokens"] == tokens > 20
    assert stats["busy_s"] == pytest.approx(tokens / 4000, abs=1e-3) and stats["max_concurrency"] == 8
    assert stats["first_request_at"] <= stats["last_reply_at"]


def test_the_stand_in_command_serves_and_says_how_to_point_the_product_at_it():
    import queue
    import subprocess
    import sys
    import threading

    proc = subprocess.Popen([sys.executable, "-m", "visit_assets.cli", "stand-in", "--port", "0", "--faults", "empty=0.5"],
                            stdout=subprocess.PIPE, text=True)
    lines_out: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines_out.put(line) for line in proc.stdout], daemon=True).start()
    try:
        first = lines_out.get(timeout=120)  # a hung start fails the test instead of blocking it
        assert "TEST INSTRUMENT" in first
        url = first.split(" on ")[-1].strip()
        lines = [lines_out.get(timeout=60) for _ in range(3)]
        assert f"VISIT_LLM_BASE_URLS={url}" in lines[2] and f"VISIT_LLM_SERVED_MODEL={STAND_IN_MODEL}" in lines[2]
        assert httpx.get(url + "/models").json()["data"][0]["id"] == STAND_IN_MODEL
    finally:
        proc.terminate()
        try:
            proc.wait(60)  # a loaded machine can take a while to unwind the server
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    bad = subprocess.run([sys.executable, "-m", "visit_assets.cli", "stand-in", "--faults", "typo=0.1"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "unknown faults ['typo']" in bad.stderr


def test_it_takes_hundreds_of_connections_at_once_as_a_serving_engine_does():
    """A client opening many connections together (the openai backend at concurrency 256, as a
    pipeline feeding one GPU server does) is never reset: the listen backlog of Python's socketserver
    (5) dropped connections of the stand-in command."""
    import re
    import subprocess
    import sys

    facts = facts_for(CAT)
    values = [{"facts": format_facts(facts), "question": f"Is the cat number {i} green-eyed?", "answer": "Yes."}
              for i in range(600)]
    reqs = [LLMRequest(tuple(VERIFY_PROMPT.messages(v, strip=False)), SamplingParams(max_tokens=24)) for v in values]
    proc = subprocess.Popen([sys.executable, "-m", "visit_assets.cli", "stand-in", "--port", "0", "--faults", ""],
                            stdout=subprocess.PIPE, text=True)
    try:
        url = re.search(r"http://127\.0\.0\.1:\d+/v1", proc.stdout.readline()).group(0)
        backend = OpenAIBackend(url, STAND_IN_MODEL, concurrency=256, max_retries=0)
        results = LLMClient(backend).generate(reqs)
        backend.close()
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    assert len(results) == 600 and all(r.status == OK for r in results) and backend.retries == 0
