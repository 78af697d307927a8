"""Dagster's step retries of the LLM steps (visit_assets/defs/llm/retries.py), through real runs of
`image_facts` on the sample (upstream assets materialized once per module with no LLM):

1. an endpoint that goes away in the middle of the step's batch: Dagster retries the step, and the
   retry sends only the requests that had no answer (counted at the backend): nothing is paid
   twice, and the output is the output of a run that never failed;
2. failures a retry would only repeat (an endpoint refusing the key or model, a misconfigured
   resource) fail the step at once, and an outage that lasts fails it after the policy's retries;
3. every step that can send LLM requests carries the policy, no other step does, and the policy
   comes from the settings.

The conftest sets VISIT_LLM_STEP_RETRY_DELAY_S=0 before the definitions load: no test waits.
"""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import dagster as dg
import pytest

from visit_assets import settings
from visit_assets.definitions import build_defs, defs
from visit_assets.defs.llm.resources import LLMResource
from visit_assets.defs.llm.retries import LLM_RETRY_POLICY, llm_retry_policy, retry_only_transient
from visit_assets.defs.partitions import dataset_partitions
from visit_assets.lib.instructify import facts as facts_mod
from visit_assets.lib.llm import LLMCache, LLMClient, LLMRequest, LLMUnavailableError
from visit_assets.lib.llm.echo_backend import EchoBackend
from visit_assets.lib.storage import ParquetStore
from visit_assets.runner import run_dataset

UPSTREAM = ["source_records", "grouped_metadata", "metadata_rejects"]
STEP = "image_facts"
ENDPOINT = "http://llm.internal:8000/v1"
ANSWERED_BEFORE_OUTAGE = 2


class FlakyBackend(EchoBackend):
    """Echo answers, counted per request. After `fail_after` answers (over all batches) the endpoint
    goes away: the batch stops with LLMUnavailableError, as the openai backend stops once its own
    retries are spent, after reporting every answer that finished. `outage_batches` batches meet the
    outage (then it is back); `transient=False` is an endpoint refusing the key or model."""

    def __init__(self, fail_after: int, outage_batches: int = 1, transient: bool = True):
        super().__init__(name="flaky-echo", weights="test-script")
        self.fail_after, self.outage_batches, self.transient = fail_after, outage_batches, transient
        self.batches: list[list[str]] = []  # the cache keys of the requests each complete() was handed
        self.answered: Counter[str] = Counter()
        self.outages = 0

    def complete(self, requests, on_result) -> None:
        self.batches.append([r.cache_key(self.identity) for r in requests])
        for i, request in enumerate(requests):
            if self.outages < self.outage_batches and sum(self.answered.values()) >= self.fail_after:
                self.outages += 1
                raise LLMUnavailableError([ENDPOINT], f"{ENDPOINT}: ConnectError: connection refused",
                                          transient=self.transient)
            self.answered[request.cache_key(self.identity)] += 1
            on_result(i, self.answer(request))


_BACKENDS: dict[str, FlakyBackend] = {}


class FlakyLLM(LLMResource):
    """The `llm` resource over a FlakyBackend, one per cache path (a retried step in the same process
    meets the same backend, as it would meet the same endpoint)."""

    fail_after: int = ANSWERED_BEFORE_OUTAGE
    outage_batches: int = 1
    transient: bool = True

    def flaky(self) -> FlakyBackend:
        return _BACKENDS.setdefault(self.resolved_cache_path(), FlakyBackend(
            self.fail_after, self.outage_batches, self.transient))

    def get_client(self) -> LLMClient:
        return LLMClient(self.flaky(), LLMCache(self.resolved_cache_path()))


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> tuple[Path, int, int]:
    """(a VISIT_HOME with the upstream assets of the sample materialized, the shard with the most
    declarative-QA requests, how many)."""
    base = tmp_path_factory.mktemp("step-retries") / "home"
    shutil.copytree(settings.sample_dataset(), base / "datasets" / "sample")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VISIT_HOME", str(base))
        for var in ("VISIT_STORE", "VISIT_DATASETS"):
            mp.delenv(var, raising=False)
        with dg.instance_for_test() as instance:
            run_dataset(build_defs(llm=LLMResource(backend="echo", use_cache=False)), "sample", instance,
                        only=UPSTREAM, log=lambda _: None)
    store = ParquetStore(base / "store")
    counts = {s: len({r.cache_key(FlakyBackend(0).identity)
                      for record in store.read("grouped_metadata", "sample", s).to_dicts()
                      for r in facts_mod.qa_to_declarative_requests(record)})
              for s in range(settings.n_shards())}
    shard = max(counts, key=counts.get)
    assert counts[shard] > ANSWERED_BEFORE_OUTAGE + 1, counts  # the outage falls in the middle of the batch
    return base, shard, counts[shard]


@pytest.fixture
def home(prepared, tmp_path, monkeypatch) -> Path:
    path = tmp_path / "home"
    shutil.copytree(prepared[0], path)
    monkeypatch.setenv("VISIT_HOME", str(path))
    for var in ("VISIT_STORE", "VISIT_DATASETS", "VISIT_LLM_BASE_URLS", "VISIT_LLM_SERVED_MODEL"):
        monkeypatch.delenv(var, raising=False)
    return path


def _materialize(llm: LLMResource, shard: int) -> dg.ExecuteInProcessResult:
    """One run of STEP for one partition, as the UI or a backfill launches it."""
    job = build_defs(llm=llm).resolve_implicit_global_asset_job_def()
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(dataset_partitions.name, ["sample"])
        return job.execute_in_process(
            instance=instance, partition_key=dg.MultiPartitionKey({"dataset": "sample", "shard": str(shard)}),
            asset_selection=[dg.AssetKey(STEP)], raise_on_error=False)


def _events(result: dg.ExecuteInProcessResult, kind: dg.DagsterEventType) -> list:
    return [e for e in result.all_events if e.event_type == kind and e.step_key == STEP]


def _causes(result: dg.ExecuteInProcessResult) -> list:
    [failure] = _events(result, dg.DagsterEventType.STEP_FAILURE)
    error, chain = failure.step_failure_data.error, []
    while error is not None:
        chain.append(error)
        error = error.cause
    return chain


# ---------------------------------------------------------------------------------------------
# 1. a transient outage mid-batch: retried by Dagster, nothing sent twice
# ---------------------------------------------------------------------------------------------


def test_an_outage_mid_batch_is_retried_and_the_retry_sends_only_what_had_no_answer(prepared, home, tmp_path):
    _, shard, n = prepared
    assert LLM_RETRY_POLICY is not None and LLM_RETRY_POLICY.max_retries >= 1
    llm = FlakyLLM(cache_path=str(tmp_path / "cache.sqlite"))
    result = _materialize(llm, shard)
    assert result.success
    backend = llm.flaky()
    assert backend.outages == 1  # the endpoint did go away in the middle of the first attempt
    assert len(_events(result, dg.DagsterEventType.STEP_UP_FOR_RETRY)) == 1
    assert len(_events(result, dg.DagsterEventType.STEP_RESTARTED)) == 1  # Dagster ran the step again

    first, retry = backend.batches  # the first attempt's batch, then the retry's
    answered_first = set(first[:ANSWERED_BEFORE_OUTAGE])
    assert len(first) == n  # the whole batch was handed over; the outage came after two answers
    assert set(retry) == set(first) - answered_first and len(retry) == n - ANSWERED_BEFORE_OUTAGE
    assert set(backend.answered) == set(first) and max(backend.answered.values()) == 1  # each paid for once
    assert LLMCache(llm.resolved_cache_path()).count() == n

    [materialization] = result.asset_materializations_for_node(STEP)
    meta = {k: v.value for k, v in materialization.metadata.items()}
    assert meta["llm_cache_hits"] == ANSWERED_BEFORE_OUTAGE and meta["llm_sent"] == n - ANSWERED_BEFORE_OUTAGE

    # and the output is what a run that never met an outage writes
    retried = ParquetStore(home / "store").read(STEP, "sample", shard)
    clean_home = tmp_path / "clean"
    shutil.copytree(prepared[0], clean_home)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VISIT_HOME", str(clean_home))
        clean = FlakyLLM(cache_path=str(tmp_path / "clean-cache.sqlite"), outage_batches=0)
        assert _materialize(clean, shard).success
    assert clean.flaky().outages == 0 and len(clean.flaky().batches) == 1
    clean_store = ParquetStore(clean_home / "store")
    assert retried.height > 0 and retried.equals(clean_store.read(STEP, "sample", shard))
    assert (ParquetStore(home / "store").current(STEP, "sample", shard)["data_version"]
            == clean_store.current(STEP, "sample", shard)["data_version"])


# ---------------------------------------------------------------------------------------------
# 2. what a retry would only repeat fails at once; a lasting outage fails after the retries
# ---------------------------------------------------------------------------------------------


def test_an_endpoint_refusing_the_key_or_model_is_not_retried(prepared, home, tmp_path):
    _, shard, _ = prepared
    llm = FlakyLLM(cache_path=str(tmp_path / "cache.sqlite"), transient=False)
    result = _materialize(llm, shard)
    assert not result.success
    assert not _events(result, dg.DagsterEventType.STEP_UP_FOR_RETRY)
    assert len(llm.flaky().batches) == 1  # one attempt: no retry burnt on it
    assert any(e.cls_name == "LLMUnavailableError" and ENDPOINT in e.message for e in _causes(result))
    assert LLMCache(llm.resolved_cache_path()).count() == ANSWERED_BEFORE_OUTAGE  # what finished is kept


def test_a_misconfigured_llm_resource_is_not_retried(prepared, home, tmp_path):
    _, shard, _ = prepared
    result = _materialize(LLMResource(backend="openai", served_model="m", cache_path=str(tmp_path / "c.sqlite")),
                          shard)
    assert not result.success
    assert not _events(result, dg.DagsterEventType.STEP_UP_FOR_RETRY)
    assert any(e.cls_name == "ValueError" and "base_urls" in e.message for e in _causes(result))


def test_an_outage_that_lasts_fails_the_step_after_the_policys_retries(prepared, home, tmp_path):
    _, shard, n = prepared
    llm = FlakyLLM(cache_path=str(tmp_path / "cache.sqlite"), outage_batches=100)
    result = _materialize(llm, shard)
    assert not result.success
    retries = LLM_RETRY_POLICY.max_retries
    assert len(_events(result, dg.DagsterEventType.STEP_UP_FOR_RETRY)) == retries
    backend = llm.flaky()
    assert len(backend.batches) == retries + 1  # every attempt met the outage
    assert all(len(b) == n - ANSWERED_BEFORE_OUTAGE for b in backend.batches[1:])  # never the answered ones
    assert max(backend.answered.values()) == 1
    assert any(e.cls_name == "LLMUnavailableError" for e in _causes(result))


def test_a_multi_asset_step_retries_outages_only():
    """The same rule for a step that yields its results (generated_ and filtered_conversations)."""
    attempts = Counter()

    @dg.multi_asset(specs=[dg.AssetSpec("a"), dg.AssetSpec("b")], retry_policy=LLM_RETRY_POLICY)
    @retry_only_transient
    def step():
        attempts["step"] += 1
        if attempts["step"] == 1:
            raise LLMUnavailableError([ENDPOINT], "503 after the retries")
        yield dg.MaterializeResult(asset_key="a")
        yield dg.MaterializeResult(asset_key="b")

    @dg.multi_asset(specs=[dg.AssetSpec("c")], retry_policy=LLM_RETRY_POLICY)
    @retry_only_transient
    def broken():
        attempts["broken"] += 1
        raise KeyError("a column that is not there")
        yield dg.MaterializeResult(asset_key="c")

    assert dg.materialize([step]).success and attempts["step"] == 2
    failed = dg.materialize([broken], raise_on_error=False)
    assert not failed.success and attempts["broken"] == 1


@pytest.mark.parametrize(("status", "transient"), [(503, True), (500, True), (401, False), (403, False), (404, False)])
def test_the_openai_backend_says_whether_an_outage_is_transient(stub_server, fast_openai, status, transient):
    """What decides a step retry: an endpoint still failing after the backend's own retries may come
    back; one refusing the key, URL or model would refuse the retry the same way."""
    server = stub_server(lambda n, body: (status, {}, {"error": "no"}))
    with pytest.raises(LLMUnavailableError, match=str(status)) as failed:
        LLMClient(fast_openai([server.url], concurrency=1, max_retries=2)).generate([LLMRequest.chat("q")])
    assert failed.value.transient is transient
    assert server.count == (3 if transient else 1)  # the backend's own retries, or none


# ---------------------------------------------------------------------------------------------
# 3. where the policy is, and where its numbers come from
# ---------------------------------------------------------------------------------------------


def test_every_step_that_can_send_llm_requests_and_no_other_has_the_policy():
    with_llm = []
    for assets_def in defs.resolve_asset_graph().assets_defs:
        if not assets_def.is_executable:
            continue
        policy = assets_def.op.retry_policy
        if "llm" in assets_def.required_resource_keys:
            with_llm.append(assets_def.op.name)
            assert policy == LLM_RETRY_POLICY, assets_def.op.name
        else:
            assert policy is None, assets_def.op.name  # a bug or bad data fails the same way again
    assert set(with_llm) >= {"image_facts", "generated_instructions", "clustered_instructions",
                             "generated_conversations", "filtered_conversations", "quality_scores",
                             "pairwise_evaluation"}


def test_the_policy_backs_off_exponentially_with_jitter_from_the_settings(monkeypatch):
    for var in ("VISIT_LLM_STEP_RETRIES", "VISIT_LLM_STEP_RETRY_DELAY_S"):
        monkeypatch.delenv(var, raising=False)
    assert llm_retry_policy() == dg.RetryPolicy(max_retries=3, delay=30, backoff=dg.Backoff.EXPONENTIAL,
                                                jitter=dg.Jitter.PLUS_MINUS)
    monkeypatch.setenv("VISIT_LLM_STEP_RETRIES", "5")
    monkeypatch.setenv("VISIT_LLM_STEP_RETRY_DELAY_S", "7.5")
    policy = llm_retry_policy()
    assert (policy.max_retries, policy.delay) == (5, 7.5)
    assert 7.5 * 3 - 7.5 <= policy.calculate_delay(2) <= 7.5 * 3 + 7.5  # (2^2 - 1) x delay, +- delay
    monkeypatch.setenv("VISIT_LLM_STEP_RETRIES", "0")
    assert llm_retry_policy() is None
