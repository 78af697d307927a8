"""A daemon-launched run killed with -9 (what the OOM killer does) mid-way through a model step: its
`llm` pool slot (an LLM step on an endpoint: visit_assets/defs/llm/pools.py) is freed within the
bound dagster.yaml sets, the other runs go on, the run is retried once by the daemon, and the retry
sends the LLM only the requests that were never answered.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import dagster as dg
import pytest
import yaml
from conftest import REPO, Watch, drop_in

from visit_assets import settings
from visit_assets.defs.automation import RETRY_OF_TAG

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("dagster_dev")]

DATASET = "sample"
LLM_POOL = "llm"
DELAY_S = 1.0  # a slow model (one request at a time): the step is still running when it is killed
ANSWERED_BEFORE_KILL = 2
LLM_STEPS = {"image_facts", "generated_instructions", "generated_conversations", "filtered_conversations"}
TIMEOUT_S = 600


def slot_bound_s() -> float:
    """How long a dead run may keep its slots, from the project's own dagster.yaml."""
    monitoring = yaml.safe_load((REPO / "dagster.yaml").read_text())["run_monitoring"]
    return monitoring["poll_interval_seconds"] + monitoring["free_slots_after_run_end_seconds"] + 30


def pool_claims(instance: dg.DagsterInstance) -> list[tuple[str, str]]:
    info = instance.event_log_storage.get_concurrency_info(LLM_POOL)
    return [(claim.run_id, claim.step_key) for claim in info.claimed_slots]


def run_processes(instance: dg.DagsterInstance, run_id: str) -> set[int]:
    """Pids of the run's worker and step processes, as its own events record them, still alive."""
    pids = {e.dagster_event.pid for e in instance.all_logs(run_id) if e.dagster_event and e.dagster_event.pid}
    return {pid for pid in pids if Path(f"/proc/{pid}").exists()}


def pick_victim(daemon: Watch) -> tuple[str, str, set[str]]:
    """A run whose LLM step holds the llm slot and has had answers since it was first seen, and
    still holds it a second after the answers were noted: (run id, step, answers noted)."""
    first_seen: dict[tuple[str, str], int] = {}
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        claims = [c for c in pool_claims(daemon.instance) if c[1] in LLM_STEPS]
        total = sum(daemon.llm.answered.values())
        if claims and total - first_seen.setdefault(claims[0], total) >= ANSWERED_BEFORE_KILL:
            with daemon.llm.cond:
                answered = {h for h, n in daemon.llm.answered.items() if n}
            # each answer is stored as it arrives, before the next request goes out (concurrency 1);
            # a second's wait covers the last one
            time.sleep(1.0)
            if claims[0] in pool_claims(daemon.instance):
                return claims[0][0], claims[0][1], answered
        time.sleep(0.1)
    pytest.fail(f"no LLM step held the llm slot through {ANSWERED_BEFORE_KILL} answers in {TIMEOUT_S} s")


def retries_of(daemon: Watch, victim: str) -> list[dg.DagsterRun]:
    """Dagster's automatic retry, or the regeneration sensor's re-run when Dagster missed it
    (defs/automation.py: RETRY_OF_TAG)."""
    return [*daemon.instance.get_runs(dg.RunsFilter(tags={"dagster/parent_run_id": victim})),
            *daemon.instance.get_runs(dg.RunsFilter(tags={RETRY_OF_TAG: victim}))]


def retry_done(daemon: Watch, victim: str) -> bool:
    return any(r.status in (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE) for r in retries_of(daemon, victim))


def succeeded_since(daemon: Watch, since: float, victim: str) -> bool:
    """A run other than the victim's retry succeeded after `since` (wall clock): the other runs went on."""
    records = daemon.instance.get_run_records(dg.RunsFilter(statuses=[dg.DagsterRunStatus.SUCCESS]))
    return any(r.end_time and r.end_time > since and r.dagster_run.tags.get("dagster/parent_run_id") != victim
               for r in records)


def test_killed_run_frees_its_slot_and_its_retry_resends_nothing_answered(daemon: Watch):
    daemon.llm.delay_s = DELAY_S
    drop_in(settings.sample_dataset(), daemon.visit_home / "datasets" / DATASET)
    victim, step, answered = pick_victim(daemon)
    pids = run_processes(daemon.instance, victim)
    assert pids, f"no process of run {victim} found"
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    killed_at, killed_wall = time.monotonic(), time.time()
    with daemon.llm.cond:
        received_at_kill = dict(daemon.llm.received)
    assert answered, "the killed step had been answered nothing: the test would prove nothing"
    daemon.llm.delay_s = 0.0  # the rest of the graph at full speed

    daemon.wait(f"the killed run's slot ({step}) to be freed",
                lambda: victim not in {r for r, _ in pool_claims(daemon.instance)}, slot_bound_s(),
                allow_failures=True)
    freed_after = time.monotonic() - killed_at
    run = daemon.instance.get_run_by_id(victim)
    assert run.status == dg.DagsterRunStatus.FAILURE, run.status

    # The retry is what this test is about: the rest of the graph need not finish (the regeneration
    # test drives whole graphs through the daemon), only some other run must have gone on meanwhile.
    daemon.wait("the killed run's retry to end and another run to succeed after the kill",
                lambda: retry_done(daemon, victim) and succeeded_since(daemon, killed_wall, victim), TIMEOUT_S,
                allow_failures=True)
    failed = {r.run_id for r in daemon.instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE]))}
    assert failed == {victim}, failed  # only the killed run failed; its retry and every other run succeeded
    retries = retries_of(daemon, victim)
    assert len(retries) == 1 and retries[0].status == dg.DagsterRunStatus.SUCCESS, retries
    resent = [h for h in answered if daemon.llm.received[h] > received_at_kill[h]]
    assert not resent, f"{len(resent)} answered requests were sent again after the kill"
    by = "the sensor (Dagster missed it)" if RETRY_OF_TAG in retries[0].tags else "Dagster"
    print(f"slot freed {freed_after:.0f} s after the kill (bound {slot_bound_s():.0f} s); retried by {by}")
