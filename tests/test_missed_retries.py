"""A failed run whose automatic retry Dagster's daemon never launched (defs/automation.py says how
that happens) stops holding its dataset back after a grace period and is re-run once by the
regeneration sensor; a run whose retry is still due, or came, is left to Dagster."""

from __future__ import annotations

import time

import dagster as dg

from visit_assets.defs.automation import RETRY_GRACE_S, RETRY_OF_TAG, missed_retry_requests, unfinished_runs

ASSETS = [dg.AssetKey("image_facts"), dg.AssetKey("generated_conversations")]


def failed_run(instance: dg.DagsterInstance, **tags: str) -> dg.DagsterRun:
    run = instance.add_run(dg.DagsterRun(job_name="__ASSET_JOB", asset_selection=frozenset(ASSETS), tags={
        "dagster/partition": "sample|0", "dagster/sensor_name": "regenerate_downstream", **tags}))
    instance.report_run_failed(run)  # status FAILURE and an end time, as run monitoring leaves a dead run
    instance.add_run_tags(run.run_id, {"dagster/will_retry": "true"})  # the daemon's verdict, too late
    return instance.get_run_by_id(run.run_id)


def test_a_missed_retry_frees_the_dataset_and_is_rerun_once():
    with dg.instance_for_test() as instance:
        run = failed_run(instance)
        assert run.is_complete_and_waiting_to_retry
        assert [r.run_id for r in unfinished_runs(instance)] == [run.run_id]  # the retry may still come
        assert missed_retry_requests(instance) == []

        later = time.time() + RETRY_GRACE_S + 1
        assert unfinished_runs(instance, now=later) == []
        [request] = missed_retry_requests(instance, now=later)
        assert request.run_key == f"retry-of:{run.run_id}"
        assert request.partition_key == "sample|0"
        assert request.asset_selection == sorted(ASSETS, key=lambda k: k.to_user_string())
        assert request.tags[RETRY_OF_TAG] == run.run_id


def test_retries_launched_rerun_or_not_ours_are_left_alone():
    with dg.instance_for_test() as instance:
        retried = failed_run(instance, **{"dagster/auto_retry_run_id": "r2"})  # Dagster's retry came
        rerun = failed_run(instance, **{RETRY_OF_TAG: "r0"})  # already the second chance
        other = failed_run(instance, **{"dagster/sensor_name": "dataset_folders"})
        later = time.time() + RETRY_GRACE_S + 1
        assert not retried.is_complete_and_waiting_to_retry
        assert missed_retry_requests(instance, now=later) == []
        assert {r.run_id for r in unfinished_runs(instance)} == {rerun.run_id, other.run_id}
        assert unfinished_runs(instance, now=later) == []
