"""The openai backend against real local HTTP servers that fail: retries, Retry-After, dropped
connections, endpoints that stay down (clear error, finished results cached, resumable)."""

from __future__ import annotations

import time

import pytest
from llm_stub import CLOSE, chat_response, echo_reply, free_port

from visit_assets.lib.llm import LLMCache, LLMClient, LLMRequest, LLMUnavailableError, SamplingParams
from visit_assets.lib.llm.openai_backend import openai_body, parse_retry_after


def reqs(n: int) -> list[LLMRequest]:
    return [LLMRequest.chat(f"question {i}", tag=i) for i in range(n)]


def test_retries_500_then_success(stub_server, fast_openai, tmp_path):
    server = stub_server(lambda n, body: (500, {}, {"error": "boom"}) if n <= 2 else echo_reply(body))
    backend = fast_openai([server.url], concurrency=1)
    client = LLMClient(backend, LLMCache(tmp_path / "c.sqlite"))
    [res] = client.generate(reqs(1))
    assert res.ok and res.text == "echo question 0"
    assert server.count == 3 and backend.retries == 2 and client.last_stats.retries == 2


def test_429_honours_retry_after(stub_server, fast_openai):
    server = stub_server(lambda n, body: (429, {"Retry-After": "1"}, {"error": "slow down"}) if n == 1 else echo_reply(body))
    backend = fast_openai([server.url], concurrency=1)
    t0 = time.monotonic()
    [res] = LLMClient(backend).generate(reqs(1))
    assert res.ok and server.count == 2 and backend.retries == 1
    assert time.monotonic() - t0 >= 0.95  # waited what the server asked, not the 10 ms backoff


def test_dropped_connections_are_retried(stub_server, fast_openai):
    server = stub_server(lambda n, body: CLOSE if n <= 2 else echo_reply(body))
    backend = fast_openai([server.url], concurrency=1)
    [res] = LLMClient(backend).generate(reqs(1))
    assert res.ok and server.count == 3 and backend.retries == 2


def test_down_endpoint_fails_over_to_healthy_one(stub_server, fast_openai):
    server = stub_server()
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens here: connection refused
    backend = fast_openai([dead, server.url], concurrency=4)
    results = LLMClient(backend).generate(reqs(12))
    assert [r.text for r in results] == [f"echo question {i}" for i in range(12)]
    assert server.count == 12


def test_requests_are_spread_over_endpoints(stub_server, fast_openai):
    a, b = stub_server(), stub_server()
    results = LLMClient(fast_openai([a.url, b.url + "/v1"], concurrency=4)).generate(reqs(20))
    assert all(r.ok for r in results)
    assert a.count + b.count == 20 and a.count >= 5 and b.count >= 5


def test_endpoint_that_stays_down_raises_after_caching_finished(stub_server, fast_openai, tmp_path):
    path = tmp_path / "c.sqlite"
    flaky = stub_server(lambda n, body: echo_reply(body) if n <= 3 else (503, {}, {"error": "overloaded"}))
    backend = fast_openai([flaky.url], concurrency=1, max_retries=2, model_name="m", weights="w1")
    client = LLMClient(backend, LLMCache(path))
    with pytest.raises(LLMUnavailableError) as info:
        client.generate(reqs(8))
    err = info.value
    assert flaky.url + "/v1" in err.endpoints and "503" in err.last_error
    assert flaky.url in str(err)
    assert flaky.count == 3 + 3  # three answers, then one request tried 1 + 2 retries; nothing after
    assert backend.retries == 2
    assert sum(r is not None for r in err.partial) == 3
    assert LLMCache(path).count() == 3  # finished before the failure: cached

    healthy = stub_server()
    resumed = LLMClient(fast_openai([healthy.url], concurrency=2, model_name="m", weights="w1"), LLMCache(path))
    results = resumed.generate(reqs(8))
    assert resumed.last_stats.cache_hits == 3 and resumed.last_stats.sent == 5 and healthy.count == 5
    assert [r.text for r in results] == [f"echo question {i}" for i in range(8)]


def test_unreachable_endpoint_raises_clear_error(fast_openai):
    url = f"http://127.0.0.1:{free_port()}"
    backend = fast_openai([url], max_retries=2)
    with pytest.raises(LLMUnavailableError) as info:
        LLMClient(backend).generate(reqs(3))
    assert info.value.endpoints == [url + "/v1"]
    assert "Connect" in info.value.last_error
    assert backend.retries >= 2


def test_bad_request_is_an_error_row_not_cached(stub_server, fast_openai, tmp_path):
    def script(n, body):
        if "bad" in body["messages"][-1]["content"]:
            return 400, {}, {"error": "prompt too long"}
        return echo_reply(body)

    server = stub_server(script)
    client = LLMClient(fast_openai([server.url], concurrency=1), LLMCache(tmp_path / "c.sqlite"))
    batch = [LLMRequest.chat("fine 1"), LLMRequest.chat("bad one"), LLMRequest.chat("fine 2")]
    results = client.generate(batch)
    assert [r.status for r in results] == ["ok", "error", "ok"]
    assert "400" in results[1].error and server.count == 3  # 4xx is not retried
    assert client.last_stats.failures["error"] == 1
    client.generate(batch)
    assert client.last_stats.sent == 1  # only the error row is tried again


def test_auth_failure_stops_the_batch(stub_server, fast_openai):
    server = stub_server(lambda n, body: (401, {}, {"error": "bad key"}))
    with pytest.raises(LLMUnavailableError, match="401"):
        LLMClient(fast_openai([server.url], concurrency=1)).generate(reqs(5))
    assert server.count == 1


def test_api_key_from_env_only(stub_server, fast_openai, monkeypatch):
    monkeypatch.setenv("TEST_LLM_KEY", "sk-test-secret")
    server = stub_server()
    backend = fast_openai([server.url], api_key_env="TEST_LLM_KEY")
    LLMClient(backend).generate(reqs(1))
    assert server.headers[0]["Authorization"] == "Bearer sk-test-secret"
    assert "sk-test-secret" not in repr(backend) and "sk-test-secret" not in repr(vars(backend))
    assert "sk-test-secret" not in repr(backend.identity)
    monkeypatch.delenv("TEST_LLM_KEY")
    with pytest.raises(ValueError, match="TEST_LLM_KEY"):
        LLMClient(fast_openai([server.url], api_key_env="TEST_LLM_KEY")).generate(reqs(1))


def test_malformed_outputs_are_recorded_without_losing_rows(stub_server, fast_openai, tmp_path):
    schema = {"type": "object", "properties": {"label": {"type": "string"}}, "required": ["label"]}

    def script(n, body):
        kind = body["messages"][-1]["content"]
        return 200, {}, {
            "empty": chat_response(""),
            "none": chat_response(None),
            "truncated": chat_response("It was a", finish="length", completion_tokens=3),
            "junk": chat_response("{label: oops"),
            "wrong": chat_response('{"name": "x"}'),
            "good": chat_response('{"label": "cat"}'),
        }[kind]

    server = stub_server(script)
    kinds = ["good", "empty", "none", "truncated", "junk", "wrong", "good"]
    batch = [LLMRequest.chat(k, json_schema=schema, params=SamplingParams(max_tokens=3), tag=i) for i, k in enumerate(kinds)]
    client = LLMClient(fast_openai([server.url], concurrency=3), LLMCache(tmp_path / "c.sqlite"))
    results = client.generate(batch)
    assert [r.status for r in results] == ["ok", "empty", "empty", "truncated", "unparseable", "unparseable", "ok"]
    assert results[0].parsed == {"label": "cat"} and results[4].parsed is None
    assert client.last_stats.failures == {"empty": 2, "truncated": 1, "unparseable": 2, "error": 0}
    assert client.last_stats.sent == 6  # the second "good" is the same request: deduplicated
    # malformed rows are the model's answer: cached, not re-sent
    client.generate(batch)
    assert client.last_stats.sent == 0


def test_body_styles():
    schema = {"type": "object"}
    r = LLMRequest.chat("x", json_schema=schema, params=SamplingParams(stop=("\n",), seed=None))
    body = openai_body(r, "served")
    assert body["response_format"] == {"type": "json_schema", "json_schema": {"name": "response", "schema": schema}}
    assert "seed" not in body and body["stop"] == ["\n"] and body["model"] == "served"
    assert openai_body(r, "s", schema_style="json_object")["response_format"] == {"type": "json_object", "schema": schema}
    assert openai_body(r, "s", schema_style="structured_outputs")["structured_outputs"] == {"json": schema}
    assert openai_body(r, "s", schema_style="guided")["guided_json"] == schema
    rx = LLMRequest.chat("x", regex="[0-9]+")
    assert openai_body(rx, "s")["structured_outputs"] == {"regex": "[0-9]+"}
    assert openai_body(rx, "s", regex_style="guided")["guided_regex"] == "[0-9]+"
    assert "structured_outputs" not in openai_body(rx, "s", regex_style="none")


def test_parse_retry_after():
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert 9 <= parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) <= 11


def test_batches_running_at_once_share_the_backends_concurrency(stub_server, fast_openai):
    """Sampling lanes call the backend from several threads: their requests in flight together never
    exceed `concurrency` (one pool of worker threads), and every batch gets its own results."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    lock, now, peak = threading.Lock(), [0], [0]

    def reply(n, body):
        with lock:
            now[0] += 1
            peak[0] = max(peak[0], now[0])
        time.sleep(0.05)
        with lock:
            now[0] -= 1
        return echo_reply(body)

    server = stub_server(reply)
    backend = fast_openai([server.url], concurrency=4)
    client = LLMClient(backend)
    batches = [[LLMRequest.chat(f"lane {lane} question {i}", tag=i) for i in range(12)] for lane in range(3)]
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(client.generate, batches))
    assert [[r.text for r in rs] for rs in results] == [[f"echo {r.messages[-1]['content']}" for r in b] for b in batches]
    assert peak[0] == 4 and server.count == 36
    backend.close()
    assert backend._workers is None


def test_each_batch_counts_its_own_retries_when_batches_share_the_backend(stub_server, fast_openai):
    import json
    import threading

    from visit_assets.lib.llm.client import LLMStats

    failed: dict[str, int] = {}

    def reply(n, body):
        text = json.dumps(body)
        if "flaky" in text and failed.get(text, 0) < 2:  # each flaky request fails twice, then answers
            failed[text] = failed.get(text, 0) + 1
            return 500, {}, {"error": "boom"}
        return echo_reply(body)

    server = stub_server(reply)
    client = LLMClient(fast_openai([server.url], concurrency=4))
    batches = {"flaky": [LLMRequest.chat(f"flaky {i}") for i in range(3)],
               "clean": [LLMRequest.chat(f"clean {i}") for i in range(5)]}
    stats = {name: LLMStats() for name in batches}
    threads = [threading.Thread(target=client.generate, args=(batch,), kwargs={"stats": stats[name]})
               for name, batch in batches.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert stats["flaky"].retries == 6 and stats["clean"].retries == 0 and client.backend.retries == 6
    assert stats["flaky"].completed == 3 and stats["clean"].completed == 5
