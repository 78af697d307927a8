"""Security properties the project promises:

1. every way the project starts the Dagster UI binds loopback (127.0.0.1) unless told otherwise;
2. the LLM API key comes only from the environment (the config names the variable, never holds the
   value), is sent to the endpoint, and is never logged, stored, or written to metadata;
3. dataset names (partition keys), which become file paths and DuckDB SQL text, are validated at
   every entry: the Parquet store, the datasets resource, the folder sensor, an asset run, the catalog.
"""

from __future__ import annotations

import inspect
import json
import logging
import re
import shutil
import sys
import uuid
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from visit_assets import cli
from visit_assets.definitions import build_defs
from visit_assets.defs.ingest.sensors import dataset_folder_sensor
from visit_assets.defs.llm.resources import LLMResource
from visit_assets.defs.resources import DatasetsResource, StoreResource
from visit_assets.lib.catalog import build_catalog
from visit_assets.lib.metadata.dataset import DatasetError
from visit_assets.lib.storage import ParquetStore
from visit_assets.runner import run_dataset

sys.path.insert(0, str(Path(__file__).resolve().parent / "llm"))  # the shared OpenAI-compatible stub
from llm_stub import StubServer, chat_response  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

# ---------------------------------------------------------------------------------------------
# 1. The UI binds loopback
# ---------------------------------------------------------------------------------------------

# `dagster dev`, also as `"$venv/bin/dagster" dev`, `{...'dagster'} dev` or ["dagster", "dev", ...],
# and the webserver started on its own (but not a dependency pin such as `dagster-webserver>=1.13`).
UI_COMMAND = re.compile(
    r"""dagster["'}]*(?:\s+|["']\s*,\s*["'])dev\b|dagster[-_]webserver\b(?!\s*[<>=~!;\]"'])""")
LOOPBACK = re.compile(r"""(?:-h|--host)(?:["']\s*,\s*["']|[\s=]+)(?:127\.0\.0\.1|localhost|\[?::1\]?)(?![\d.])""")
ANY_HOST = re.compile(r"0\.0\.0\.0|(?:-h|--host)(?:[\s=]+|[\"']\s*,\s*[\"'])(?:::|\[::\])(?![\w:])")
# The cluster guide: there the Helm chart decides the binding (not a command a user runs locally).
NOT_LOCAL = {"docs/deploy-k8s.md"}


def _makefile_recipe(target: str) -> str:
    """The recipe of one Makefile target, continuation lines joined."""
    lines = (REPO / "Makefile").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(rf"^{re.escape(target)}\s*:(?!=)", line))
    recipe = []
    for line in lines[start + 1:]:
        if not line.startswith("\t"):
            break
        recipe.append(line.strip())
    return re.sub(r"\\\s+", " ", "\n".join(recipe))


def _is_command(before: str, word: str, after: str) -> bool:
    """A command, not the name in prose ("`dagster dev` shows these runs", "dagster dev exited with"):
    list form, or followed by an option, or the first thing on its line (after `$ ` and VAR=value)."""
    if "," in word or re.match(r"[\s\"']+-", after):
        return True
    prefix = re.sub(r"^\s*(?:\$\s+)?(?:\w+=\S+\s+)*", "", before)
    return re.fullmatch(r"""["']?[\w./${}~-]*["']?""", prefix) is not None and not after.startswith("`")


def _ui_commands(text: str) -> list[str]:
    """Each UI start in `text`: from the command word to the end of its statement (joined lines)."""
    text = re.sub(r"\\\n\s*", " ", text)  # shell line continuations
    out = []
    for m in UI_COMMAND.finditer(text):
        line_start = text.rfind("\n", 0, m.start()) + 1
        if not _is_command(text[line_start:m.start()], m.group(0), text[m.end():]):
            continue
        end = text.find("\n", m.end())
        statement = text[line_start:end if end >= 0 else None]
        if statement.rstrip().endswith(("[", "(", ",")):  # a list spread over lines: take up to its close
            close = re.search(r"[\])]", text[m.end():])
            statement = text[line_start:m.end() + (close.end() if close else 400)]
        out.append(statement)
    return out


def _local_files() -> list[Path]:
    """Files that can start the UI or tell a user how: build files, CLI, scripts, docs, tests."""
    files = [REPO / "Makefile", REPO / "README.md", REPO / "workspace.yaml", REPO / "dagster.yaml"]
    files += sorted((REPO / "scripts").glob("*")) + sorted((REPO / "docs").glob("**/*.md"))
    files += sorted((REPO / "visit_assets").rglob("*.py")) + sorted((REPO / "tests").rglob("*.py"))
    files += sorted((REPO / "bench").rglob("*.py")) if (REPO / "bench").exists() else []
    return [f for f in files if f.is_file() and f.relative_to(REPO).as_posix() not in NOT_LOCAL
            and f.resolve() != Path(__file__).resolve()]


def test_make_ui_binds_loopback():
    recipe = _makefile_recipe("ui")
    commands = _ui_commands(recipe)
    assert commands, f"`make ui` no longer starts the Dagster UI? recipe:\n{recipe}"
    for command in commands:
        assert LOOPBACK.search(command), f"`make ui` must bind 127.0.0.1 explicitly: {command}"
        assert not ANY_HOST.search(command), f"`make ui` binds every interface: {command}"


def test_run_sample_prints_a_loopback_ui_command(home, monkeypatch, capsys):
    """The command `visit-assets run-sample` tells the user to run (the pipeline itself stubbed out)."""
    import visit_assets.runner

    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster_home"))
    monkeypatch.setattr(visit_assets.runner, "run_dataset", lambda *a, **k: None)
    (home / "store").mkdir()  # the stubbed run would have made it
    assert cli.main(["run-sample"]) == 0
    printed = capsys.readouterr().out
    commands = _ui_commands(printed)
    assert commands, f"run-sample no longer prints how to open the UI:\n{printed}"
    for command in commands:
        assert LOOPBACK.search(command), f"run-sample prints a UI command without -h 127.0.0.1: {command}"
        assert not ANY_HOST.search(command)
    assert "http://127.0.0.1:" in printed


def test_every_ui_command_in_code_docs_and_tests_binds_loopback():
    files = _local_files()
    assert any(f.name == "cli.py" for f in files) and any(f.name == "Makefile" for f in files)
    unbound, wildcard = [], []
    for f in files:
        text = f.read_text(errors="replace")
        rel = f.relative_to(REPO).as_posix()
        for command in _ui_commands(text):
            if not LOOPBACK.search(command):
                unbound.append(f"{rel}: {command.strip()}")
        for line_no, line in enumerate(text.splitlines(), 1):
            if ANY_HOST.search(line):
                wildcard.append(f"{rel}:{line_no}: {line.strip()}")
    assert not unbound, "UI commands without an explicit loopback host:\n" + "\n".join(unbound)
    assert not wildcard, "binding every interface outside the cluster profile:\n" + "\n".join(wildcard)


@pytest.mark.parametrize("text, ok", [
    ('"$venv/bin/dagster" dev -w workspace.yaml -h 127.0.0.1 -p 3000', True),
    ("dagster dev -w workspace.yaml \\\n  --host 127.0.0.1 -p 3000", True),
    ('subprocess.Popen(["dagster", "dev", "-h", "127.0.0.1", "-p", str(port)])', True),
    ("dagster dev -w workspace.yaml -p 3000", False),
    ("dagster dev -h 0.0.0.0 -p 3000", False),
    ("dagster-webserver -h 127.0.0.10 -p 3000", False),
    ('subprocess.Popen(["dagster", "dev",\n    "-p", str(port)])', False),
    ("so `dagster dev` later shows these runs", None),
    ('pytest.fail(f"dagster dev exited with {code}")', None),
    ("# a child outliving `dagster dev`, or dagster dev itself", None),
    ("dagster dev", False),
    ("$ DAGSTER_HOME=/tmp/x .venv/bin/dagster dev", False),
    ('dependencies = ["dagster-webserver>=1.13.27,<1.14"]', None),
])
def test_the_ui_command_check_itself(text, ok):
    """The parser above must catch an unbound or wildcard command, or the tests above prove nothing."""
    commands = _ui_commands(text)
    if ok is None:
        assert not commands
        return
    assert commands
    assert all(LOOPBACK.search(c) and not ANY_HOST.search(c) for c in commands) is ok


# ---------------------------------------------------------------------------------------------
# 2. Secrets: the API key only from the environment, sent, and never logged or stored
# ---------------------------------------------------------------------------------------------

KEY_ENV = "VISIT_SECURITY_TEST_LLM_KEY"
SECRET_WORDS = re.compile(r"api_?key|(?:^|_)token$|secret|passw|credential|bearer|auth", re.IGNORECASE)


def _authorization(headers: dict) -> str | None:
    return next((v for k, v in headers.items() if k.lower() == "authorization"), None)


class FakeOpenAI(StubServer):
    """The scripted OpenAI-compatible stub (tests/llm/llm_stub.py), answering every chat request
    with one status; `authorizations` lists the Authorization header of each request."""

    def __init__(self, status: int = 200):
        def script(n, body):
            if status == 200:
                return 200, {}, chat_response("The photograph shows an astronaut in a white spacesuit.",
                                              prompt_tokens=20, completion_tokens=10)
            return status, {}, {"error": {"message": "overloaded", "type": "server_error"}}
        super().__init__(script)

    @property
    def authorizations(self) -> list[str | None]:
        return [_authorization(h) for h in self.headers]


@pytest.fixture
def fake_openai():
    servers = []

    def make(status: int = 200) -> FakeOpenAI:
        servers.append(FakeOpenAI(status))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


@pytest.fixture
def secret(monkeypatch) -> str:
    value = f"sk-visit-SECRET-{uuid.uuid4().hex}"
    monkeypatch.setenv(KEY_ENV, value)
    for var in ("VISIT_LLM_BACKEND", "VISIT_LLM_BASE_URLS", "VISIT_LLM_SERVED_MODEL", "VISIT_LLM_API_KEY_ENV",
                "VISIT_LLM_CACHE", "VISIT_LLM_MAX_RETRIES"):
        monkeypatch.delenv(var, raising=False)
    return value


def _everything_recorded(instance: dg.DagsterInstance) -> str:
    """Every run (config, tags) and every event of every run, serialized."""
    parts = []
    for run in instance.get_runs():
        parts.append(dg.serialize_value(run))
        parts += [dg.serialize_value(entry) for entry in instance.all_logs(run.run_id)]
    return "\n".join(parts)


def _files_containing(root: Path, needle: str) -> list[str]:
    raw = needle.encode()
    return [str(p) for p in root.rglob("*") if p.is_file() and raw in p.read_bytes()]


def _assert_nowhere(secret: str, instance, home: Path, caplog, capfd) -> None:
    recorded = _everything_recorded(instance)
    assert "dagster/row_count" in recorded or "STEP_FAILURE" in recorded  # the serialization saw the events
    assert secret not in recorded, "the API key is in the Dagster event log / run records"
    assert not _files_containing(home, secret), "the API key was written to a file under VISIT_HOME"
    assert secret not in caplog.text, "the API key was logged"
    out, err = capfd.readouterr()
    assert secret not in out and secret not in err, "the API key reached stdout/stderr"


def test_no_config_field_takes_a_secret_value():
    """Only the NAME of the variable holding the key is configurable; nothing accepts the key itself."""
    from visit_assets.lib.llm.openai_backend import OpenAIBackend

    assert "api_key_env" in LLMResource.model_fields
    resources = {type(r) for r in build_defs().resources.values()} | {LLMResource}
    offending = [f"{cls.__name__}.{name}" for cls in resources for name in cls.model_fields
                 if SECRET_WORDS.search(name) and not name.endswith("_env")]
    params = inspect.signature(OpenAIBackend.__init__).parameters
    offending += [f"OpenAIBackend({name}=)" for name in params
                  if SECRET_WORDS.search(name) and not name.endswith("_env")]
    assert not offending, f"fields that would hold a secret value: {offending}"


@pytest.mark.parametrize("configured_by", ["resource", "environment"])
def test_api_key_is_sent_but_never_logged_or_stored(home, secret, fake_openai, caplog, capfd, monkeypatch,
                                                    configured_by):
    caplog.set_level(logging.DEBUG)  # urllib3's debug logging included
    server = fake_openai()
    if configured_by == "resource":
        llm = LLMResource(backend="openai", base_urls=server.url, served_model="stub-model", api_key_env=KEY_ENV,
                          max_retries=0, timeout_s=30, concurrency=2)
    else:  # LLMResource() with every setting from VISIT_LLM_* (how an executor's environment configures it)
        for var, value in {"VISIT_LLM_BACKEND": "openai", "VISIT_LLM_BASE_URLS": server.url,
                           "VISIT_LLM_SERVED_MODEL": "stub-model", "VISIT_LLM_API_KEY_ENV": KEY_ENV,
                           "VISIT_LLM_MAX_RETRIES": "0"}.items():
            monkeypatch.setenv(var, value)
        llm = LLMResource()
    defs = build_defs(llm=llm)
    (home / "dagster_home").mkdir()
    with dg.instance_for_test(temp_dir=str(home / "dagster_home")) as instance:
        run_dataset(defs, "sample", instance, only=["source_records", "grouped_metadata", "metadata_rejects",
                                                    "image_facts"], log=lambda _: None)
        meta = instance.get_latest_materialization_event(dg.AssetKey("image_facts")).asset_materialization.metadata
        # The key went over the wire, on every request: otherwise this test would prove nothing.
        assert server.authorizations and meta["llm_sent"].value > 0
        assert set(server.authorizations) == {f"Bearer {secret}"}
        assert meta["llm_backend"].value == "openai"
        assert (home / "store" / "llm_cache.sqlite").exists()
        # Nor is it kept on the objects that live for the process.
        backend = llm.get_client().backend
        assert secret not in repr(vars(backend)) and secret not in repr(backend)
        assert secret not in repr(llm) and secret not in json.dumps(llm.backend_settings())
        _assert_nowhere(secret, instance, home, caplog, capfd)


def test_api_key_stays_out_of_failure_messages(home, secret, fake_openai, caplog, capfd):
    """An endpoint that stays down fails the step; the error, logs and events still hold no key."""
    caplog.set_level(logging.DEBUG)
    server = fake_openai(status=503)
    llm = LLMResource(backend="openai", base_urls=server.url, served_model="stub-model", api_key_env=KEY_ENV,
                      max_retries=0, timeout_s=30, concurrency=1)
    defs = build_defs(llm=llm)
    (home / "dagster_home").mkdir()
    with dg.instance_for_test(temp_dir=str(home / "dagster_home")) as instance:
        with pytest.raises(RuntimeError) as failed:
            run_dataset(defs, "sample", instance, only=["source_records", "grouped_metadata", "metadata_rejects",
                                                        "image_facts"], log=lambda _: None)
        assert secret not in str(failed.value)
        assert "HTTP 503" in _everything_recorded(instance)  # the failure, with its endpoint error, is recorded
        assert server.authorizations and set(server.authorizations) == {f"Bearer {secret}"}
        _assert_nowhere(secret, instance, home, caplog, capfd)


def test_a_named_but_unset_key_variable_is_a_clear_error(monkeypatch):
    from visit_assets.lib.llm.openai_backend import OpenAIBackend

    monkeypatch.delenv(KEY_ENV, raising=False)
    backend = OpenAIBackend(["http://127.0.0.1:9"], served_model="m", api_key_env=KEY_ENV)
    with pytest.raises(ValueError, match=KEY_ENV):
        backend._headers()


@pytest.mark.parametrize("url", ["http://user:sk-visit-SECRET-in-url@127.0.0.1:8000",
                                 "https://sk-visit-SECRET-in-url@host/v1"])
def test_credentials_in_a_base_url_are_refused_without_echoing_them(url):
    """Base URLs are resource config (the UI shows it) and appear in errors: a key may not ride in one."""
    from visit_assets.lib.llm.openai_backend import OpenAIBackend

    with pytest.raises(ValueError, match="api_key_env") as err:
        OpenAIBackend([url], served_model="m")
    assert "SECRET" not in str(err.value)
    with pytest.raises(ValueError, match="api_key_env"):
        LLMResource(backend="openai", base_urls=url, served_model="m").get_client()


# ---------------------------------------------------------------------------------------------
# 3. Dataset names that become paths and SQL are validated at every entry
# ---------------------------------------------------------------------------------------------

HOSTILE = ["../x", "a'b", "a;DROP TABLE x", "a b", "ünïcødé", "x" * 200, "", "a/b", "-x", ".hidden", "sample\n"]
# Of those, the ones a folder in the datasets directory can be called.
HOSTILE_FOLDERS = ["a'b", "a;DROP TABLE x", "a b", "ünïcødé", "x" * 200, "-x"]
NAME_ERROR = "must match"

# Fixed in lib/storage.py (fullmatch), still open in lib/metadata/dataset.py: `$` matches before a
# trailing newline, so check_dataset_name("sample\n") passes.
def _cases(names):
    return [pytest.param(n, id=repr(n)[:24]) for n in names]


@pytest.mark.parametrize("name", _cases(HOSTILE))
def test_parquet_store_rejects_hostile_dataset_names(tmp_path, name):
    store = ParquetStore(tmp_path / "store")
    frame = pl.DataFrame({"x": [1]})
    for call in (lambda: store.write("grouped_metadata", name, "v1", frame, shard=0),
                 lambda: store.write("grouped_metadata", name, "v1", frame),
                 lambda: store.read("grouped_metadata", name, 0),
                 lambda: store.scan("grouped_metadata", name),
                 lambda: store.current("grouped_metadata", name, 0),
                 lambda: store.read_shards("grouped_metadata", name, [0, 1]),
                 lambda: store.versions("grouped_metadata", name),
                 lambda: store.write(name, "d1", "v1", frame),  # asset and version names are held to the same rule
                 lambda: store.write("grouped_metadata", "d1", name, frame)):
        with pytest.raises(ValueError, match=NAME_ERROR):
            call()
    assert not (tmp_path / "store").exists() or not any(p.is_file() for p in (tmp_path / "store").rglob("*"))


@pytest.mark.parametrize("name", _cases(HOSTILE))
def test_datasets_resource_rejects_hostile_names(tmp_path, name):
    with pytest.raises(DatasetError, match=NAME_ERROR) as err:
        DatasetsResource(root=str(tmp_path)).layout(name)
    assert isinstance(err.value, ValueError)


def test_folder_sensor_never_registers_a_hostile_folder(home):
    datasets = home / "datasets"
    for name in HOSTILE_FOLDERS:
        shutil.copytree(datasets / "sample", datasets / name)  # valid content: only the name is wrong
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(instance=instance, resources={
            "datasets": DatasetsResource(), "store": StoreResource()})
        result = dataset_folder_sensor(context)
    added = [k for req in result.dynamic_partitions_requests for k in req.partition_keys]
    requested = [r.partition_key for r in result.run_requests]
    assert added == ["sample"] and requested == ["sample"]  # the good folder still comes through


def test_folder_sensor_never_registers_a_name_with_a_trailing_newline(home):
    datasets = home / "datasets"
    shutil.copytree(datasets / "sample", datasets / "sample2\n")
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(instance=instance, resources={
            "datasets": DatasetsResource(), "store": StoreResource()})
        result = dataset_folder_sensor(context)
    added = [k for req in result.dynamic_partitions_requests for k in req.partition_keys]
    assert added == ["sample"]


@pytest.mark.parametrize("name", _cases(["../x", "a'b", "a;DROP TABLE x", "a b", "sample\n"]))
def test_a_hostile_partition_added_in_the_ui_fails_its_run_and_writes_nothing(home, name):
    """Dagster accepts any dynamic partition key (the UI's "add partition"); the assets must refuse it."""
    defs = build_defs()
    job = defs.resolve_implicit_global_asset_job_def()
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("dataset", [name])
        result = job.execute_in_process(instance=instance, partition_key=name, raise_on_error=False,
                                        asset_selection=[dg.AssetKey("source_records")])
    assert not result.success
    failures = [e for e in result.all_events if e.is_step_failure]
    message = failures[0].event_specific_data.error.to_string()
    assert NAME_ERROR in message and ("DatasetError" in message or "ValueError" in message)
    store = home / "store"
    assert not store.exists() or not any(p.is_file() for p in store.rglob("*"))
    assert not (home / "x").exists() and not (home / "datasets" / "x").exists()


def _grouped_rows(dataset: str, image_id: str) -> pl.DataFrame:
    """One grouped_metadata row with every column the catalog's views read (a view that does not bind raises)."""
    row = {"dataset": dataset, "image_id": image_id, "dataset_version": "v1", "image_key": image_id, "width": 1,
           "height": 1, "image_mode": "RGB", "image_checked": True, "captions": ["c"], "boxes": ["b"], "qa": ["q"],
           "ocr": ["o"], "sources": ["s"], "source_record_ids": ["r"], "code_version": "k"}
    return pl.DataFrame([row])


def _store_with_data(root: Path) -> None:
    ParquetStore(root).write("grouped_metadata", "d1", "v1", _grouped_rows("d1", "i1"))


def test_catalog_refuses_a_store_path_with_a_quote(tmp_path):
    root = tmp_path / "st'ore"
    _store_with_data(root)
    with pytest.raises(ValueError, match="quote"):
        build_catalog(root)


@pytest.mark.parametrize("name", ["a'b", "a;DROP TABLE x", "a b", "ünïcødé", "x" * 200])
def test_catalog_refuses_a_hostile_asset_folder(tmp_path, name):
    """Asset folder names become view names (SQL identifiers) in the catalog."""
    _store_with_data(tmp_path)
    planted = tmp_path / name / "dataset=d1" / "v1"
    planted.mkdir(parents=True)
    pl.DataFrame({"x": [1]}).write_parquet(planted / "all.parquet")
    with pytest.raises(ValueError, match=NAME_ERROR):
        build_catalog(tmp_path)


@pytest.mark.parametrize("name", ["a-b", "main.x"])
def test_catalog_refuses_asset_folders_that_are_not_sql_identifiers(tmp_path, name):
    _store_with_data(tmp_path)
    planted = tmp_path / name / "dataset=d1" / "v1"
    planted.mkdir(parents=True)
    pl.DataFrame({"x": [1]}).write_parquet(planted / "all.parquet")
    with pytest.raises(ValueError):
        build_catalog(tmp_path)


def test_catalog_treats_dataset_names_as_data_not_sql(tmp_path):
    """Dataset names reach the catalog only as values read from files, never as SQL text."""
    import duckdb

    hostile = "x'); DROP VIEW current_partitions; --"
    _store_with_data(tmp_path)
    # A partition written around ParquetStore (which would refuse the name): pointer + file by hand.
    folder = tmp_path / "grouped_metadata" / "dataset=evil" / "v9"
    folder.mkdir(parents=True)
    _grouped_rows("evil", hostile).write_parquet(folder / "all.parquet")
    pointer = tmp_path / "_current" / "grouped_metadata" / "evil" / "all.json"
    pointer.parent.mkdir(parents=True)
    pointer.write_text(json.dumps({"asset": "grouped_metadata", "dataset": hostile, "shard": None, "data_version": "v9",
                                   "path": "grouped_metadata/dataset=evil/v9/all.parquet", "rows": 1}))
    con = duckdb.connect(str(build_catalog(tmp_path)), read_only=True)
    try:
        datasets = [r[0] for r in con.sql("SELECT dataset FROM current_partitions").fetchall()]
        image_ids = [r[0] for r in con.sql("SELECT image_id FROM grouped_metadata").fetchall()]
        assert sorted(datasets) == sorted(["d1", hostile]) and sorted(image_ids) == sorted(["i1", hostile])
    finally:
        con.close()
