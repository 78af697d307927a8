"""Faults through real Dagster materializations, in subprocesses, against a fake OpenAI-compatible
server (tests/fake_llm_server.py) that counts every request body it receives and answers:

1. a run SIGKILLed in the middle of generated_conversations' LLM batch, then re-run: the output
   equals an uninterrupted run's, and no request answered before the kill is sent again;
2. the LLM endpoint dies mid-run: the step fails naming the endpoint, what finished is cached,
   and once the endpoint is back the re-run sends only the remaining requests;
3. eight shard runs in parallel processes on one store and one LLM cache: no lock errors, every
   partition materialized, every image in exactly one shard, every LLM request sent exactly once.

Two more tests pin bugs found here and fixed in runner.py: the re-run after a SIGKILL under the
repo's dagster.yaml (the dead run kept its pool slot, so the re-run waited for ever), and
run_dataset's error naming the failed step's own error.

Upstream assets run once per module with the `echo` backend; the LLM layer's own SIGKILL test is
tests/llm/test_llm_resume.py, the 4-shard ingest backfill tests/test_parallel_backfill.py.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # sibling helpers, whatever pytest's import mode
from fake_llm_server import FakeLLMServer  # noqa: E402
from test_parallel_backfill import SHARD_RUN  # noqa: E402

from visit_assets import settings  # noqa: E402
from visit_assets.lib.ids import shard_of  # noqa: E402
from visit_assets.lib.llm.openai_backend import OpenAIBackend  # noqa: E402
from visit_assets.lib.storage import ParquetStore  # noqa: E402

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
SERVED = "fake-model"
MODEL_LABEL = OpenAIBackend("http://127.0.0.1:1", SERVED).identity.label()  # the cache's `model` column
UPSTREAM = ["source_records", "grouped_metadata", "metadata_rejects", "image_facts"]
GENERATION = ["generated_conversations", "conversation_attempts"]
SMALL = {"generated_conversations": {"max_iterations": 1, "max_tokens": 64}}
WAIT_S = 120  # upper bound on any one wait; the happy path never comes near it
LLM_POOL = "llm"  # the pool of LLM steps whose backend is an endpoint (visit_assets/defs/llm/pools.py)

# One dataset-level run per asset batch (run_dataset: the same code path as `make sample`).
RUN = """
import json, sys
import dagster as dg
from visit_assets.definitions import defs
from visit_assets.runner import run_dataset
with dg.DagsterInstance.get() as instance:
    run_dataset(defs, "sample", instance, only=sys.argv[1].split(","), op_config=json.loads(sys.argv[2]),
                log=lambda line: print(line, flush=True))
"""

# One shard's run of the given assets (for the parallel backfill).
SHARD_ASSETS_RUN = """
import json, sys
import dagster as dg
from visit_assets.definitions import defs
key = dg.MultiPartitionKey({"dataset": "sample", "shard": sys.argv[1]})
ops = {op: {"config": cfg} for op, cfg in json.loads(sys.argv[3]).items()}
with dg.DagsterInstance.get() as instance:
    result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=instance, partition_key=key, asset_selection=[dg.AssetKey(k) for k in sys.argv[2].split(",")],
        run_config={"ops": ops}, raise_on_error=False)
sys.exit(0 if result.success else 1)
"""


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def make_home(path: Path, *, product_instance: bool = False) -> Path:
    """A VISIT_HOME with the sample dataset and a Dagster home (optionally with the repo's dagster.yaml)."""
    shutil.copytree(settings.sample_dataset(), path / "datasets" / "sample")
    (path / "dagster_home").mkdir(parents=True)
    if product_instance:
        shutil.copyfile(REPO / "dagster.yaml", path / "dagster_home" / "dagster.yaml")
    return path


def clone_home(source: Path, target: Path, *, product_instance: bool = False) -> Path:
    shutil.copytree(source, target)
    if product_instance:  # each pool limited to one step, as `make sample` / `make ui` run it
        shutil.copyfile(REPO / "dagster.yaml", target / "dagster_home" / "dagster.yaml")
    return target


def run_env(home: Path, *, shards: int, server: FakeLLMServer | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VISIT_", "DAGSTER_"))}
    env.update(VISIT_HOME=str(home), DAGSTER_HOME=str(home / "dagster_home"), VISIT_SHARDS=str(shards),
               OMP_WAIT_POLICY="PASSIVE", PYTHONPATH=str(REPO) + os.pathsep + env.get("PYTHONPATH", ""),
               # one attempt per step: these tests pin what a failed step leaves and what a re-run by
               # hand sends; Dagster's step retries are tests/llm/test_llm_step_retries.py's
               VISIT_LLM_STEP_RETRIES="0")
    if server is None:
        env["VISIT_LLM_BACKEND"] = "echo"
    else:
        env.update(VISIT_LLM_BACKEND="openai", VISIT_LLM_BASE_URLS=server.url, VISIT_LLM_SERVED_MODEL=SERVED,
                   VISIT_LLM_MODEL_PATH="", VISIT_LLM_MAX_RETRIES="1", VISIT_LLM_TIMEOUT_S="10")
    env.update(extra)
    return env


class Proc:
    """A materialization subprocess in its own session (so the whole group can be SIGKILLed)."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path):
        self.log = log
        self._out = open(log, "w")
        self.p = subprocess.Popen([sys.executable, *args], env=env, stdout=self._out, stderr=subprocess.STDOUT,
                                  start_new_session=True, cwd=REPO)

    def wait(self, timeout: float = WAIT_S) -> int:
        try:
            return self.p.wait(timeout)
        finally:
            self._out.close()

    def kill(self) -> None:
        if self.p.poll() is None:
            os.killpg(self.p.pid, signal.SIGKILL)
        self.p.wait()
        self._out.close()

    def output(self) -> str:
        return self.log.read_text()


def run_assets(home: Path, assets: list[str], env: dict[str, str], name: str, config: dict = SMALL) -> Proc:
    return Proc(["-c", RUN, ",".join(assets), json.dumps(config)], env, home / f"{name}.log")


def run_ok(home: Path, assets: list[str], env: dict[str, str], name: str) -> str:
    proc = run_assets(home, assets, env, name)
    code = proc.wait()
    out = proc.output()
    assert code == 0, out[-4000:]
    return out


def cache_rows(home: Path, model: str = MODEL_LABEL) -> int:
    """Rows the LLM cache holds for `model`, read-only (safe while a run writes)."""
    path = home / "store" / "llm_cache.sqlite"
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as con:
            return con.execute("SELECT COUNT(*) FROM llm_responses WHERE model = ?", (model,)).fetchone()[0]
    except sqlite3.OperationalError:  # created but no table yet
        return 0


def poll(condition, what: str, timeout: float = WAIT_S, every: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(every)


def wait_server(server: FakeLLMServer, predicate, proc: Proc, timeout: float = WAIT_S) -> None:
    """Wait on the server's request events until predicate(server); fail early if the run dies."""
    deadline = time.monotonic() + timeout
    while not server.wait_for(predicate, 0.5):
        assert proc.p.poll() is None, f"the run exited ({proc.p.returncode}) first: {proc.output()[-3000:]}"
        assert time.monotonic() < deadline, "timed out waiting for the server"


def outputs(home: Path) -> dict[str, pl.DataFrame]:
    store = ParquetStore(home / "store")
    return {name: store.read(name, "sample", 0) for name in GENERATION}


def assert_same_output(home: Path, reference: dict[str, pl.DataFrame]) -> None:
    got = outputs(home)
    conv, ref_conv = got["generated_conversations"], reference["generated_conversations"]
    assert conv.height == ref_conv.height > 0
    assert conv["conversation_id"].n_unique() == conv.height  # nothing duplicated
    assert conv.sort("conversation_id").equals(ref_conv.sort("conversation_id"))  # nothing lost, nothing changed
    keys = ["image_id", "iteration", "status"]
    assert got["conversation_attempts"].sort(keys).equals(reference["conversation_attempts"].sort(keys))


def latest_metadata(home: Path, key: str) -> dict:
    with dg.DagsterInstance.from_config(str(home / "dagster_home")) as instance:
        event = instance.get_latest_materialization_event(dg.AssetKey(key))
        return {k: v.value for k, v in event.asset_materialization.metadata.items()}


# ---------------------------------------------------------------------------------------------
# shared set-up: upstream assets once (echo backend), and an uninterrupted reference run
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """(home with the upstream assets of one shard materialized, reference outputs, reference bodies)."""
    base = make_home(tmp_path_factory.mktemp("faults") / "base")
    run_ok(base, UPSTREAM, run_env(base, shards=1, server=None), "upstream")
    ref_home = clone_home(base, base.parent / "reference")
    server = FakeLLMServer()
    try:
        run_ok(ref_home, GENERATION, run_env(ref_home, shards=1, server=server), "reference")
    finally:
        server.close()
    assert max(server.received.values()) == 1  # an uninterrupted run sends each request once
    assert cache_rows(ref_home) == len(server.received)
    return base, outputs(ref_home), set(server.received)


# ---------------------------------------------------------------------------------------------
# 1. SIGKILL mid-batch, then re-run
# ---------------------------------------------------------------------------------------------

KILL_AFTER = 5  # answers before the server holds every further request (the kill lands then, in round 1)


def _until_quiet(server: FakeLLMServer, quiet_s: float = 1.0) -> None:
    """Until the server has received no request for `quiet_s` seconds (bounded by WAIT_S)."""
    deadline = time.monotonic() + WAIT_S
    seen = -1
    while seen != sum(server.received.values()):
        assert time.monotonic() < deadline, "requests kept arriving after the kill"
        seen = sum(server.received.values())
        time.sleep(quiet_s)


def _kill_mid_batch(home: Path, server: FakeLLMServer, env: dict[str, str]) -> tuple[set[str], set[str]]:
    """Start generation, SIGKILL it once KILL_AFTER answers are cached and more are in flight.

    Returns (bodies answered with 200, bodies received but never answered)."""
    server.hold_after = KILL_AFTER
    proc = run_assets(home, GENERATION, env, "killed")
    try:
        wait_server(server, lambda s: s.admitted == KILL_AFTER and sum(s.answered.values()) == KILL_AFTER
                    and s.held >= 1, proc)  # KILL_AFTER answered, the rest of the batch waiting on the server
        poll(lambda: cache_rows(home) == KILL_AFTER, "the answers to be committed to the cache")  # client side
    finally:
        proc.kill()
    assert proc.p.returncode == -signal.SIGKILL
    server.release()  # held requests are dropped from now on, as is any straggler of the dead process
    server.wait_for(lambda s: s.held == 0, WAIT_S)
    _until_quiet(server)  # requests the killed process left in socket buffers arrive (and are dropped) now,
    server.hold_after = None  # not answered after this, which would count them as answered before the kill
    answered = set(server.answered)
    assert len(answered) == KILL_AFTER and max(server.answered.values()) == 1
    return answered, set(server.received) - answered



def _described(server: FakeLLMServer, keys: set[str]) -> list[str]:
    """Each body by its system prompt's start and its last message's start (enough to tell which stage sent it)."""
    out = []
    for key in sorted(keys):
        messages = server.bodies[key].get("messages") or [{}]
        system = next((m.get("content", "") for m in messages if m.get("role") == "system"), "")
        out.append(f"{key}: system={str(system)[:60]!r} last={str(messages[-1].get('content', ''))[:160]!r}")
    return out


def assert_resent_only_unanswered(server, resent: set, answered: set, ref_bodies: set, event: str) -> None:
    assert not resent & answered, f"a request answered before {event} was sent again"
    assert max(server.received.values()) == 1  # and nothing twice in the re-run
    assert resent == ref_bodies - answered  # exactly the unanswered ones (in-flight ones among them)


def test_sigkill_mid_generation_then_rerun_loses_nothing_and_resends_nothing(prepared, tmp_path):
    base, reference, ref_bodies = prepared
    home = clone_home(base, tmp_path / "home")
    server = FakeLLMServer()
    try:
        env = run_env(home, shards=1, server=server)
        answered, in_flight = _kill_mid_batch(home, server, env)
        assert in_flight and answered < ref_bodies  # killed in the middle of the batch
        assert cache_rows(home) == KILL_AFTER  # every answer given before the kill is kept
        assert ParquetStore(home / "store").current("generated_conversations", "sample", 0) is None  # nothing half-written

        server.reset_counts()
        run_ok(home, GENERATION, env, "rerun")
        resent = set(server.received)
    finally:
        server.close()
    assert_resent_only_unanswered(server, resent, answered, ref_bodies, "the kill")
    assert in_flight <= resent, f"sent before the kill, never by a whole run: {_described(server, in_flight - resent)}"
    meta = latest_metadata(home, "generated_conversations")
    assert meta["llm_cache_hits"] == KILL_AFTER and meta["llm_sent"] == len(resent)
    assert cache_rows(home) == len(ref_bodies)
    assert_same_output(home, reference)


def test_rerun_after_sigkill_is_not_blocked_by_the_dead_runs_pool_slot(prepared, tmp_path):
    """The same kill under the repo's dagster.yaml (the instance `make sample` and `make ui` use)."""
    base, reference, _ = prepared
    home = clone_home(base, tmp_path / "home", product_instance=True)
    server = FakeLLMServer()
    try:
        env = run_env(home, shards=1, server=server)
        _kill_mid_batch(home, server, env)
        with dg.DagsterInstance.from_config(str(home / "dagster_home")) as instance:
            [killed] = [r.run_id for r in instance.get_runs() if r.status == dg.DagsterRunStatus.STARTED]
            rerun = run_assets(home, GENERATION, env, "rerun")
            try:
                def settled() -> bool:
                    if rerun.p.poll() is not None:
                        return True
                    info = instance.event_log_storage.get_concurrency_info(LLM_POOL)
                    held_by_dead = [s for s in info.claimed_slots if s.run_id == killed]
                    waiting = [s for s in info.pending_steps if s.run_id != killed]
                    assert not (held_by_dead and waiting), (
                        f"the re-run is waiting for the {LLM_POOL!r} pool slot the SIGKILLed run still holds")
                    return False

                poll(settled, "the re-run", every=0.2)
            finally:
                rerun.kill()
        assert rerun.p.returncode == 0, rerun.output()[-4000:]
    finally:
        server.close()
    assert_same_output(home, reference)


# ---------------------------------------------------------------------------------------------
# 2. the LLM endpoint dies mid-run
# ---------------------------------------------------------------------------------------------

DIE_AFTER = 20  # past the first round (one generation request per image): it dies during verification
# One lane: with two (the openai default) each lane's batch reports its own cached count and which
# lane's verification the outage meets is timing; lanes change neither the requests nor the output.
ONE_LANE = {"generated_conversations": {**SMALL["generated_conversations"], "lanes": 1}}


def test_endpoint_dies_mid_run_clear_error_finished_kept_rerun_sends_the_rest(prepared, tmp_path):
    base, reference, ref_bodies = prepared
    assert len(ref_bodies) > DIE_AFTER
    home = clone_home(base, tmp_path / "home", product_instance=True)  # a failed step must free its pool slot
    server = FakeLLMServer()
    try:
        env = run_env(home, shards=1, server=server)
        server.die_after = DIE_AFTER
        proc = run_assets(home, GENERATION, env, "outage", ONE_LANE)
        code = proc.wait()
        out = proc.output()
        assert code != 0, out[-4000:]
        answered = set(server.answered)
        assert len(answered) == DIE_AFTER and server.dead

        # the error names the endpoint and the connection failure, and says what was kept
        assert f"LLM endpoint(s) unavailable after retries: {server.url}" in out, out[-4000:]
        assert "ConnectError" in out or "Connection refused" in out, out[-4000:]
        round_1 = reference["conversation_attempts"].filter(pl.col("status") != "stopped").height  # one per image
        assert "[verification round 1 (checker)] stopped: LLM endpoint(s) unavailable" in out  # generation went through
        assert f"{DIE_AFTER - round_1} answers of this batch are cached; re-run to resume" in out, out[-4000:]
        with dg.DagsterInstance.from_config(str(home / "dagster_home")) as instance:
            failed = [r for r in instance.get_runs() if r.status == dg.DagsterRunStatus.FAILURE]
            assert len(failed) == 1
            step_failures = [e for e in instance.all_logs(failed[0].run_id)
                             if e.dagster_event and e.dagster_event.event_type == dg.DagsterEventType.STEP_FAILURE]
            [failure] = step_failures
            error, chain = failure.dagster_event.step_failure_data.error, []
            while error is not None:  # Dagster's step error wraps the asset's exception
                chain.append(error)
                error = error.cause
            assert any(e.cls_name == "LLMUnavailableError" and server.url in e.message for e in chain), chain
            assert not instance.event_log_storage.get_concurrency_info(LLM_POOL).claimed_slots  # slot given back
        assert cache_rows(home) == DIE_AFTER  # what finished is kept
        assert ParquetStore(home / "store").current("generated_conversations", "sample", 0) is None

        server.start()  # the endpoint is back, same URL
        server.reset_counts()
        run_ok(home, GENERATION, env, "rerun")
        resent = set(server.received)
    finally:
        server.close()
    assert_resent_only_unanswered(server, resent, answered, ref_bodies, "the outage")
    meta = latest_metadata(home, "generated_conversations")
    assert meta["llm_cache_hits"] == DIE_AFTER and meta["llm_sent"] == len(resent)
    assert_same_output(home, reference)


def test_run_dataset_error_names_the_unreachable_endpoint(prepared, tmp_path):
    """What `make sample` ends with when the endpoint is down: the last line must say which and why."""
    base, _, _ = prepared
    home = clone_home(base, tmp_path / "home")
    server = FakeLLMServer()
    server.stop()  # nothing listens on its URL any more: connection refused
    proc = run_assets(home, GENERATION, run_env(home, shards=1, server=server), "down")
    code = proc.wait()
    last = [line for line in proc.output().splitlines() if line.strip()][-1]
    assert code != 0 and last.startswith("RuntimeError: run for sample|0 failed"), last
    assert server.url in last and ("ConnectError" in last or "refused" in last), last
    assert server.received == Counter()


# ---------------------------------------------------------------------------------------------
# 3. eight shards backfilled in parallel processes, one store, one LLM cache
# ---------------------------------------------------------------------------------------------

SHARDS = 8


def _parallel(home: Path, name: str, args_for, env: dict[str, str]) -> None:
    procs = [Proc(["-c", *args_for(s)], env, home / f"{name}-{s}.log") for s in range(SHARDS)]
    try:
        codes = [p.wait() for p in procs]
    finally:
        for p in procs:
            p.kill()
    for s, (p, code) in enumerate(zip(procs, codes, strict=True)):
        out = p.output()
        assert code == 0, f"shard {s}: {out[-4000:]}"
        assert "database is locked" not in out.lower(), f"shard {s}"
        assert "Traceback" not in out, f"shard {s}: {out[-4000:]}"


def test_eight_shards_backfill_in_parallel_processes(tmp_path):
    from visit_assets.defs.ingest.assets import GroupingConfig
    from visit_assets.lib.metadata.pipeline import group_shard

    home = make_home(tmp_path / "home")
    server = FakeLLMServer()
    try:
        env = run_env(home, shards=SHARDS, server=server)
        run_ok(home, ["source_records"], env, "ingest")
        # ingest side: tests/test_parallel_backfill.py's shard run, eight at once
        _parallel(home, "group", lambda s: [SHARD_RUN, str(s)], env)
        # LLM side: facts and conversations, eight at once against one LLM cache
        llm_assets = ",".join(["image_facts", *GENERATION])
        _parallel(home, "llm", lambda s: [SHARD_ASSETS_RUN, str(s), llm_assets, json.dumps(SMALL)], env)
    finally:
        server.close()

    store = ParquetStore(home / "store")
    records = store.read("source_records", "sample")
    grouped = store.read_shards("grouped_metadata", "sample", range(SHARDS))
    rejects = store.read_shards("metadata_rejects", "sample", range(SHARDS))
    # every image in exactly one shard, the one its key hashes to, and the same images as one pass over all records
    assert grouped["image_id"].n_unique() == grouped.height > SHARDS
    for s in range(SHARDS):
        keys = store.read("grouped_metadata", "sample", s)["image_key"].to_list()
        assert all(shard_of(k, SHARDS) == s for k in keys), (s, keys)
    assert grouped["n_source_records"].sum() + rejects.height == records.height
    images_dir = home / "datasets" / "sample" / "images"
    whole, _ = group_shard(records, images_dir, GroupingConfig().qc(), "sample", "v", "c")
    assert sorted(grouped["image_id"]) == sorted(whole["image_id"])
    assert sum(1 for s in range(SHARDS) if store.read("grouped_metadata", "sample", s).height) >= 4  # really spread

    facts = store.read_shards("image_facts", "sample", range(SHARDS))
    conversations = store.read_shards("generated_conversations", "sample", range(SHARDS))
    assert set(facts["image_id"]) == set(grouped["image_id"])
    assert conversations["conversation_id"].n_unique() == conversations.height
    assert set(conversations["image_id"]) == set(grouped["image_id"])  # the fake model's answers all verify

    # one LLM cache, eight writers: every request sent once, every answer kept
    assert max(server.received.values()) == 1
    assert cache_rows(home) == len(server.received) == sum(server.answered.values())

    expected = {str(expected_key(s)) for s in range(SHARDS)}
    with dg.DagsterInstance.from_config(str(home / "dagster_home")) as instance:
        for key in ["grouped_metadata", "image_facts", "generated_conversations"]:
            assert set(map(str, instance.get_materialized_partitions(dg.AssetKey(key)))) == expected, key
        runs = instance.get_runs()
        assert len(runs) == 1 + 2 * SHARDS and all(r.is_success for r in runs)
        sent = 0
        for s in range(SHARDS):
            for key in ["image_facts", "generated_conversations"]:
                [record] = instance.fetch_materializations(
                    dg.AssetRecordsFilter(asset_key=dg.AssetKey(key), asset_partitions=[str(expected_key(s))]),
                    limit=1).records
                sent += record.asset_materialization.metadata.get("llm_sent", dg.IntMetadataValue(0)).value
    assert sent == len(server.received)


def expected_key(shard: int) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey({"dataset": "sample", "shard": str(shard)})
