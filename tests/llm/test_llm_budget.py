"""A run's LLM budget: caps on requests sent and output tokens, kept in the cache's store, shared by
every client of the run; a run stopped by it keeps every answer and the next run continues."""

from __future__ import annotations

import multiprocessing
from types import SimpleNamespace

import dagster as dg
import pytest

from visit_assets.defs.llm.resources import LLMResource, run_llm_batch
from visit_assets.lib.llm import LLMClient, LLMRequest, SamplingParams
from visit_assets.lib.llm.budget import Budget, BudgetExhausted, Spend
from visit_assets.lib.llm.cache import FileCache, LLMCache, NullCache
from visit_assets.lib.llm.echo_backend import EchoBackend
from visit_assets.lib.llm.types import LLMUnavailableError


def reqs(n: int, words: int = 3) -> list[LLMRequest]:
    return [LLMRequest.chat(" ".join(["word"] * words) + f" {i}", params=SamplingParams(max_tokens=50)) for i in range(n)]


def test_grant_honours_each_cap_and_the_chunk():
    assert Budget().grant(Spend(), 10_000) == 10_000  # no cap: everything at once, no chunking
    assert Budget(max_requests=5).grant(Spend(requests=3), 100) == 2
    assert Budget(max_requests=5).grant(Spend(requests=7), 100) == 0
    assert Budget(max_requests=1000, chunk=64).grant(Spend(), 500) == 64
    assert Budget(max_output_tokens=100).grant(Spend(tokens_out=99), 10) == 10
    assert Budget(max_output_tokens=100).grant(Spend(tokens_out=100), 10) == 0
    assert Budget(price_per_m_input=1.0, price_per_m_output=2.0).cost(Spend(1, 1_000_000, 500_000)) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="max_requests"):
        Budget(max_requests=-1)


def test_a_run_stops_at_its_cap_keeps_every_answer_and_the_next_run_continues(tmp_path):
    backend = EchoBackend()
    client = LLMClient(backend, LLMCache(tmp_path / "cache.sqlite"))
    batch = reqs(12) + reqs(3)  # 3 duplicates: answered with their twins, never sent twice
    with pytest.raises(BudgetExhausted) as stop:
        client.generate(batch, budget=Budget(max_requests=5), scope="run-1")
    exc = stop.value
    assert backend.calls == 5 and client.last_stats.sent == 5
    assert exc.answered == 5 + 3 and exc.total == 15  # 3 of the sent five have twins
    assert sum(r is not None for r in exc.partial) == 8
    assert exc.spend.requests == 5 and exc.spend.tokens_out == client.last_stats.tokens_out > 0
    assert "5/5 requests" in str(exc) and "Re-run to continue" in str(exc)

    results = client.generate(batch, budget=Budget(max_requests=10), scope="run-2")  # a new run, a new budget
    assert backend.calls == 12  # only the 7 never sent before
    assert client.last_stats.cache_hits == 8 and [r.text for r in results[12:]] == [r.text for r in results[:3]]
    assert client.cache.spend("run-2").requests == 7 and client.cache.spend("run-1").requests == 5


def test_the_cap_is_shared_by_every_client_of_the_run(tmp_path):
    path = tmp_path / "cache.sqlite"
    budget = Budget(max_requests=6)
    first = LLMClient(EchoBackend(), LLMCache(path))
    first.generate(reqs(4), budget=budget, scope="run-1")
    second = LLMClient(EchoBackend(name="other"), LLMCache(path))  # another step's process, another model
    with pytest.raises(BudgetExhausted) as stop:
        second.generate(reqs(4), budget=budget, scope="run-1")
    assert second.backend.calls == 2 and stop.value.spend.requests == 6
    assert LLMCache(path).spend("run-1").requests == 6 and LLMCache(path).spend("run-9") == Spend()


def _reserve(path: str, n: int, out) -> None:
    cache = LLMCache(path)
    out.put(sum(cache.reserve("run-1", Budget(max_requests=50, chunk=1), 1)[0] for _ in range(n)))


def test_reservations_from_several_processes_never_pass_the_cap(tmp_path):
    path = str(tmp_path / "cache.sqlite")
    LLMCache(path).spend("run-1")  # create the file before the processes race
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_reserve, args=(path, 40, out)) for _ in range(3)]
    for p in procs:
        p.start()
    granted = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert sum(granted) == 50 and LLMCache(path).spend("run-1").requests == 50


@pytest.mark.parametrize("make", [lambda p: FileCache(p / "answers"), lambda p: NullCache()], ids=["file", "null"])
def test_every_cache_keeps_a_ledger(tmp_path, make):
    cache = make(tmp_path)
    assert cache.reserve("run-1", Budget(max_requests=3), 5) == (3, Spend(3, 0, 0))
    assert cache.record("run-1", tokens_in=10, tokens_out=20) == Spend(3, 10, 20)
    assert cache.spend("run-1") == Spend(3, 10, 20) and cache.spend("run-2") == Spend()
    if isinstance(cache, FileCache):
        assert cache.count() == 0  # the ledger is not an answer
        with pytest.raises(ValueError, match="run id"):
            cache.spend("../escape")


def test_requests_a_stopped_chunk_never_sent_are_given_back(tmp_path):
    class Outage(EchoBackend):
        """Answers two requests, then the endpoint is gone for good."""

        def complete(self, requests, on_result):
            for i, req in enumerate(requests[:2]):
                on_result(i, self.answer(req))
            raise LLMUnavailableError(["http://gone"], "connection refused")

    cache = LLMCache(tmp_path / "c.sqlite")
    with pytest.raises(LLMUnavailableError):
        LLMClient(Outage(), cache).generate(reqs(10), budget=Budget(max_requests=8), scope="r")
    assert cache.spend("r").requests == 2 and cache.count() == 2
    backend = EchoBackend()
    with pytest.raises(BudgetExhausted):  # the two unsent of the stopped chunk are still the run's to spend
        LLMClient(backend, cache).generate(reqs(10), budget=Budget(max_requests=8), scope="r")
    assert backend.calls == 6 and cache.spend("r").requests == 8 and cache.count() == 8


def test_prices_alone_record_the_spend_without_chunking(tmp_path):
    backend = EchoBackend()
    client = LLMClient(backend, LLMCache(tmp_path / "c.sqlite"))
    client.generate(reqs(600), budget=Budget(price_per_m_output=1.0), scope="r")
    assert client.cache.spend("r") == Spend(600, client.last_stats.tokens_in, client.last_stats.tokens_out)
    assert backend.calls == 600


def test_the_token_cap_stops_after_the_chunk_that_meets_it(tmp_path):
    backend = EchoBackend()
    client = LLMClient(backend, LLMCache(tmp_path / "c.sqlite"))
    with pytest.raises(BudgetExhausted) as stop:  # each echo reply is 5 tokens: "echo: word word word i"
        client.generate(reqs(20), budget=Budget(max_output_tokens=12, chunk=2), scope="r")
    assert backend.calls == 4 and stop.value.spend.tokens_out == 20  # one chunk: 4 x the 1 request in flight


def test_a_capped_budget_needs_a_run():
    with pytest.raises(ValueError, match="scope"):
        LLMClient(EchoBackend()).generate(reqs(1), budget=Budget(max_requests=1))


def test_a_step_out_of_budget_fails_cleanly_with_how_far_it_got(tmp_path, monkeypatch):
    monkeypatch.setenv("VISIT_LLM_MAX_REQUESTS_PER_RUN", "3")
    monkeypatch.setenv("VISIT_LLM_PRICE_PER_M_OUTPUT_TOKENS", "2.5")
    resource = LLMResource(backend="echo", cache_path=str(tmp_path / "cache.sqlite"))
    assert resource.budget() == Budget(max_requests=3, price_per_m_output=2.5)
    messages: list[str] = []
    log = SimpleNamespace(info=messages.append, error=messages.append)
    context = SimpleNamespace(log=log, run=SimpleNamespace(run_id="abc-123"))
    with pytest.raises(dg.Failure) as failure:
        run_llm_batch(context, resource.get_client(), reqs(5), label="test", budget=resource.budget())
    meta = failure.value.metadata
    assert failure.value.allow_retries is False
    assert meta["llm_run_requests_sent"].value == 3 and meta["llm_answered_of_batch"].value == 3
    assert meta["llm_run_estimated_cost"].value == pytest.approx(3 * 5 * 2.5 / 1e6)
    assert any(m.startswith("[test] stopped: the LLM budget of run abc-123 is spent") for m in messages)

    context.run.run_id = "def-456"  # the next run: two new requests sent, three from the cache
    results, meta = run_llm_batch(context, resource.get_client(), reqs(5), label="test", budget=resource.budget())
    assert len(results) == 5 and meta["llm_cache_hits"] == 3 and meta["llm_sent"] == 2
    assert meta["llm_run_requests_sent"] == 2 and meta["llm_cache_hit_rate"] == 0.6


def test_a_dagster_run_out_of_budget_fails_cleanly_and_the_next_run_continues(home, monkeypatch):
    """The real graph: the declarative-QA step of a run capped at 2 requests stops with its spend in
    the failure's metadata; the next run (no cap) sends only what the first did not."""
    from visit_assets.definitions import build_defs
    from visit_assets.runner import run_dataset

    monkeypatch.setenv("VISIT_LLM_MAX_REQUESTS_PER_RUN", "2")
    llm = LLMResource(backend="echo")
    defs = build_defs(llm=llm)
    only = ["source_records", "grouped_metadata", "metadata_rejects", "image_facts"]
    (home / "dagster_home").mkdir()
    with dg.instance_for_test(temp_dir=str(home / "dagster_home")) as instance:
        with pytest.raises(RuntimeError, match="the LLM budget of run .* is spent"):
            run_dataset(defs, "sample", instance, only=only, log=lambda _: None)
        failed = [r for r in instance.get_runs() if r.status == dg.DagsterRunStatus.FAILURE]
        assert len(failed) == 1
        failure = next(e for e in instance.all_logs(failed[0].run_id, of_type=dg.DagsterEventType.STEP_FAILURE))
        meta = failure.dagster_event.step_failure_data.user_failure_data.metadata
        assert meta["llm_run_requests_sent"].value == 2 and meta["llm_sent"].value == 2
        first_total = meta["llm_batch_requests"].value
        assert first_total > 2

        # each run has its own budget: shards whose run needed at most two requests finished
        cache = LLMCache(home / "store" / "llm_cache.sqlite")
        finished = instance.fetch_materializations(dg.AssetKey("image_facts"), limit=100).records
        before = cache.count()
        assert before == 2 + sum(r.asset_materialization.metadata["llm_sent"].value for r in finished)

        monkeypatch.delenv("VISIT_LLM_MAX_REQUESTS_PER_RUN")
        run_dataset(defs, "sample", instance, only=only, log=lambda _: None)
        records = instance.fetch_materializations(dg.AssetKey("image_facts"), limit=100).records
        failed_shard = failed[0].tags["dagster/partition"]
        again = next(r.asset_materialization.metadata for r in records if r.partition_key == failed_shard)
        assert again["llm_requests"].value == first_total and again["llm_cache_hits"].value >= 2
        # every request sent by the second run is a new answer: the capped run's two were not sent again
        sent_again = sum(r.asset_materialization.metadata["llm_sent"].value for r in records
                         if r.run_id not in {f.run_id for f in finished})
        assert sent_again == cache.count() - before > 0
