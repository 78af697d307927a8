"""`visit-assets run <dataset folder> [--config] [--assets]`: a user's folder through named assets,
with progress on the terminal, and the clear errors that stop it before anything runs."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import dagster as dg
import pytest

from visit_assets import cli, settings
from visit_assets.defs.partitions import shard_partitions
from visit_assets.lib.storage import ParquetStore

IMAGES = ["astronaut.jpg", "coffee.jpg", "chelsea_cat.jpg", "rocket_launch.jpg"]
RECORDS = """\
{"id": "a", "image": "astronaut.jpg", "captions": ["An astronaut in a white suit stands in front of a flag."], \
"qa": [{"question": "What is the person wearing?", "answer": "A white space suit."}]}
{"id": "c", "image": "coffee.jpg", "captions": ["A cup of coffee sits on a wooden table."]}
{"id": "k", "image": "chelsea_cat.jpg", "captions": ["A ginger cat looks straight at the camera."]}
{"id": "r", "image": "rocket_launch.jpg", "captions": ["A rocket lifts off from the launch pad in a cloud of smoke."]}
"""
NAMED = "seed_instructions,source_records,grouped_metadata,vlm_descriptions,image_descriptions,generated_instructions"


@pytest.fixture
def env(tmp_path, monkeypatch) -> SimpleNamespace:
    """A private VISIT_HOME and DAGSTER_HOME, and a user's dataset folder outside the datasets root."""
    home = tmp_path / "home"
    monkeypatch.setenv("VISIT_HOME", str(home))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    for var in ("VISIT_STORE", "VISIT_DATASETS", "VISIT_LLM_CACHE", "VISIT_LLM_BACKEND", "VISIT_LLM_CONCURRENCY"):
        monkeypatch.delenv(var, raising=False)
    folder = tmp_path / "work" / "my_photos"
    (folder / "images").mkdir(parents=True)
    for name in IMAGES:
        shutil.copyfile(settings.sample_dataset() / "images" / name, folder / "images" / name)
    (folder / "records.jsonl").write_text(RECORDS)
    return SimpleNamespace(home=home, folder=folder, tmp=tmp_path)


def _config(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def test_run_named_assets_of_a_dataset_folder_with_progress(env, capsys):
    config = _config(env.tmp / "run.yaml", "grouped_metadata: {min_caption_words: 3}\n"
                                           "resources:\n  llm: {backend: echo}\n"
                                           "env:\n  VISIT_LLM_CONCURRENCY: 2\n")
    assert cli.main(["run", str(env.folder), "--config", config, "--assets", NAMED]) == 0
    out = capsys.readouterr().out

    # The folder is linked where the sensors look, so the UI and the daemon see the same dataset.
    linked = env.home / "datasets" / "my_photos"
    assert linked.is_symlink() and linked.resolve() == env.folder.resolve()
    # The named assets (and metadata_rejects, made by grouped_metadata's step) are in the store.
    store = ParquetStore(env.home / "store")
    shards = shard_partitions.get_partition_keys()
    assert store.read_shards("grouped_metadata", "my_photos", shards).height == 4
    assert store.read_shards("generated_instructions", "my_photos", shards).height == 4
    assert store.current("source_records", "my_photos") is not None
    assert not (env.home / "store" / "image_embeddings").exists()  # not named, not run

    # One line per run start and end (wave, partition, duration), and the LLM batches' progress.
    assert "[run 1/7] wave 0 · unpartitioned · seed_instructions started" in out
    assert re.search(r"\[run 3/7\] wave 2 · my_photos\|0 · grouped_metadata, metadata_rejects, vlm_descriptions, "
                     r"image_descriptions, generated_instructions started", out)
    assert len(re.findall(r"^\[run \d/7\] .* done in \d+\.\d s$", out, re.M)) == 7
    # the catalog, an asset, is the last run of any `visit-assets run`, named assets or not
    assert re.search(r"^\[run 7/7\] wave \d+ · unpartitioned · duckdb_catalog started$", out, re.M)
    assert re.search(r"^  generated_instructions · instructions: 0/\d \(0%\) · 0 cached$", out, re.M)
    assert re.search(r"^  generated_instructions · instructions: \d requests · 0 cached · \d sent · \d+ tokens out · "
                     r"[\d.]+ tok/s", out, re.M)
    assert "Done. Outputs" in out and "dev -w" in out and "-h 127.0.0.1" in out  # the run-sample summary

    # The same runs the UI makes, in the instance under DAGSTER_HOME, with the file's resource config.
    with dg.DagsterInstance.get() as instance:
        runs = instance.get_runs()
        assert len(runs) == 7 and all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
        assert all(r.run_config["resources"] == {"llm": {"config": {"backend": "echo"}}} for r in runs)
        grouped = [r for r in runs if "grouped_metadata" in {k.to_user_string() for k in r.asset_selection or ()}]
        assert grouped and all(r.run_config["ops"] == {"grouped_metadata": {"config": {"min_caption_words": 3}}}
                               for r in grouped)
        meta = instance.get_latest_materialization_event(
            dg.AssetKey("generated_instructions")).asset_materialization.metadata
        assert meta["llm_backend"].value == "echo"
    assert "VISIT_LLM_CONCURRENCY" not in os.environ  # the file's env applied to the command only

    # Again, one asset: its inputs exist now, and every answer comes from the LLM cache.
    assert cli.main(["run", str(env.folder), "--config", config, "--assets", "generated_instructions"]) == 0
    out = capsys.readouterr().out
    assert "already linked" in out and "[run 5/5]" in out
    assert re.search(r"^  generated_instructions · instructions: (\d) requests · \1 cached · 0 sent( · failed: .*)?$",
                     out, re.M)


def _fails(argv: list[str], capsys) -> str:
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    return captured.err


def test_errors_before_anything_runs(env, capsys):
    empty = env.tmp / "work" / "empty"
    (empty / "images").mkdir(parents=True)
    err = _fails(["run", str(empty)], capsys)
    assert "is not a dataset: no metadata files" in err and "Adding a dataset" in err
    err = _fails(["run", str(env.folder / "records.jsonl")], capsys)
    assert "is a file, not a dataset folder" in err
    err = _fails(["run", str(env.tmp / "nowhere")], capsys)
    assert "does not exist" in err
    no_images = env.tmp / "work" / "no_images"
    no_images.mkdir()
    (no_images / "records.jsonl").write_text(RECORDS)
    assert "no image folder images/" in _fails(["run", str(no_images)], capsys)
    bad_name = env.tmp / "work" / "my photos"
    shutil.copytree(env.folder, bad_name)
    assert "cannot be a dataset name" in _fails(["run", str(bad_name)], capsys)

    err = _fails(["run", str(env.folder), "--assets", "source_records,image_fact"], capsys)
    assert "unknown asset 'image_fact' (did you mean image_facts?)" in err and "generated_conversations" in err

    config = _config(env.tmp / "typo.yaml", "generated_conversations: {max_iteration: 2}\n")
    err = _fails(["run", str(env.folder), "--config", config], capsys)
    assert 'unexpected config entry "max_iteration" at path root:ops:generated_conversations:config' in err
    config = _config(env.tmp / "type.yaml", "generated_conversations: {max_iterations: two}\n")
    assert "max_iterations" in _fails(["run", str(env.folder), "--config", config], capsys)
    config = _config(env.tmp / "asset.yaml", "generated_conversatons: {max_iterations: 2}\n")
    err = _fails(["run", str(env.folder), "--config", config], capsys)
    assert "unknown asset 'generated_conversatons' (did you mean generated_conversations?)" in err
    config = _config(env.tmp / "noconfig.yaml", "image_descriptions: {threshold: 2}\n")
    assert "image_descriptions takes no config" in _fails(["run", str(env.folder), "--config", config], capsys)
    config = _config(env.tmp / "resource.yaml", "resources: {llm: {backnd: echo}}\n")
    assert 'unexpected config entry "backnd" at path root:resources:llm:config' in _fails(
        ["run", str(env.folder), "--config", config], capsys)
    config = _config(env.tmp / "store.yaml", "resources: {store: {root: /elsewhere}}\n")
    assert "resources.store: give its root with env: {VISIT_STORE: ...}" in _fails(
        ["run", str(env.folder), "--config", config], capsys)
    config = _config(env.tmp / "env.yaml", "env: {VISIT_LLM_BACKNED: echo}\n")
    assert "unknown variable VISIT_LLM_BACKNED (did you mean VISIT_LLM_BACKEND?)" in _fails(
        ["run", str(env.folder), "--config", config], capsys)
    config = _config(env.tmp / "secret.yaml", "env: {OPENAI_API_KEY: sk-x}\n")
    assert "may only set VISIT_* variables" in _fails(["run", str(env.folder), "--config", config], capsys)

    # Named assets whose inputs were never made.
    err = _fails(["run", str(env.folder), "--assets", "generated_instructions"], capsys)
    assert "image_descriptions (read by generated_instructions)" in err
    assert "seed_instructions (read by generated_instructions)" in err

    # Nothing ran, nothing was linked.
    assert not (env.home / "datasets" / "my_photos").exists() and not (env.home / "store").exists()

    # Another folder of the same name is already a dataset: refused, the other one left alone.
    other = env.home / "datasets" / "my_photos"
    shutil.copytree(env.folder, other)
    err = _fails(["run", str(env.folder), "--assets", "source_records"], capsys)
    assert f"another dataset named 'my_photos' is already in the datasets root: {other}" in err
    assert not other.is_symlink()


def test_run_sample_is_run_with_the_laptop_config(home, monkeypatch, capsys):
    import visit_assets.runner

    calls = []
    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster_home"))
    monkeypatch.setattr(visit_assets.runner, "run_dataset", lambda *a, **k: calls.append((a, k)))
    (home / "store").mkdir()
    assert cli.main(["run-sample"]) == 0
    (args, kwargs), = calls
    assert args[1] == "sample" and kwargs["op_config"] == cli.LAPTOP and kwargs["only"] is None
    assert kwargs["run_config"] == cli.QUIET
    assert "dataset sample:" in capsys.readouterr().out


def test_progress_lines_parse_the_llm_batch_messages(tmp_path):
    """The terminal lines are made from run_llm_batch's own messages: a format change shows here."""
    from visit_assets.defs.llm import LLMResource, run_llm_batch
    from visit_assets.lib.llm import LLMRequest
    from visit_assets.progress import llm_line

    class Log:
        def __init__(self):
            self.lines = []

        def info(self, msg):
            self.lines.append(msg)

        error = info

    client = LLMResource(backend="echo", cache_path=str(tmp_path / "c.sqlite")).get_client()
    run_llm_batch(SimpleNamespace(log=Log()), client, [LLMRequest.chat(f"q {i}") for i in range(5)], label="qa")
    log = Log()
    run_llm_batch(SimpleNamespace(log=log), client, [LLMRequest.chat(f"q {i}") for i in range(20)], label="qa")
    lines = [llm_line("image_facts", m) for m in log.lines]
    assert lines[0] is None  # "[qa] 20 requests on echo ...": not a line of its own
    shown = [line for line in lines if line]
    assert shown[0] == "  image_facts · qa: 5/20 (25%) · 5 cached"
    assert any(re.fullmatch(r"  image_facts · qa: \d+/20 \(\d+%\) · 5 cached · [\d.]+ req/s · \d+ tok/s · ETA \d+ s", line)
               for line in shown)
    assert re.fullmatch(r"  image_facts · qa: 20 requests · 5 cached · 15 sent · \d+ tokens out · [\d.]+ tok/s.*",
                        shown[-1])
    assert llm_line(None, "[qa] stopped: endpoint gone. 3 answers of this batch are cached; re-run to resume.") == \
        "  qa: STOPPED: endpoint gone. 3 answers of this batch are cached; re-run to resume."
    assert llm_line("x", "something else") is None


def test_folder_placement_and_the_launchpad_form(tmp_path, env):
    from visit_assets.run_command import load_run_file, place_dataset

    root = tmp_path / "root"
    target, how = place_dataset(env.folder, root, copy=True)
    assert target == root / "my_photos" and not target.is_symlink() and (target / "records.jsonl").is_file()
    assert how.startswith("copied")
    assert place_dataset(target, root) == (target, "in the datasets root")
    config = _config(tmp_path / "launchpad.yaml", "ops:\n  generated_conversations:\n    config: {max_iterations: 3}\n"
                                                 "selected_subset: {alpha_fraction: 0.5}\n")
    assert load_run_file(config).ops == {"generated_conversations": {"max_iterations": 3},
                                         "selected_subset": {"alpha_fraction": 0.5}}


def test_a_batch_shows_its_start_and_summary_and_few_lines_between():
    import io
    import logging

    from visit_assets.progress import TerminalProgress

    out = io.StringIO()
    handler = TerminalProgress(out, every_s=3600)
    messages = ["[qa] 0/20 (0%) done, 0 from cache", "[qa] 2/20 (10%) done, 0 from cache, 1.00 req/s, ETA 18 s",
                "[qa] 4/20 (20%) done, 0 from cache, 1.00 req/s, ETA 16 s",
                "[qa] 20 requests, 0 cache hits, 20 sent, 100 tokens out at 5.0 tok/s",
                "[qa] done: 20 requests, 0 cache hits, 20 sent, 100 tokens out at 5.0 tok/s",
                "[qa] 0/8 (0%) done, 3 from cache"]  # the next batch starts afresh
    for message in messages:
        record = logging.LogRecord("x", logging.INFO, "", 0, message, None, None)
        record.dagster_meta = {"step_key": "image_facts", "orig_message": message}
        handler.handle(record)
    assert out.getvalue().splitlines() == [
        "  image_facts · qa: 0/20 (0%) · 0 cached",
        "  image_facts · qa: 20 requests · 0 cached · 20 sent · 100 tokens out · 5.0 tok/s",
        "  image_facts · qa: 0/8 (0%) · 3 cached"]
