"""The Dagster UI for real: `dagster dev` (webserver + daemon) on loopback, driven by headless Chromium.

`dagster_ui` starts the server on a free 127.0.0.1 port with a private DAGSTER_HOME (the repo's
dagster.yaml: queued runs, so the daemon must run) and a private VISIT_HOME holding the sample
dataset, registered as a `dataset` partition. The sensors (on by default) are stopped before the
daemon starts: otherwise the folder sensor ingests the sample on its own and the automation sensor
then regenerates everything below it, racing the clicks and eating the two CI cores.

`page` is a Playwright page in Debian's /usr/bin/chromium (never a downloaded browser). A missing
Chromium is a failure, not a skip: .ci/run installs it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest

from visit_assets import settings
from visit_assets.definitions import defs

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
STABLE_OUT = REPO / "bench" / "out" / "ui"  # git-ignored; a copy of the screenshots that outlives tmp_path
SERVER_START_TIMEOUT = 120
_FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.failed:
        item.stash[_FAILED] = True
    return report


@dataclass
class DagsterUI:
    url: str
    instance: dg.DagsterInstance
    visit_home: Path
    dagster_home: Path
    log: Path

    def log_tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else "(no server log)"


@pytest.fixture
def ui_out(tmp_path, request) -> Path:
    """Screenshots go here (pytest's tmp_path); copied to bench/out/ui/ at the end, pass or fail."""
    out = tmp_path / "ui-out"
    out.mkdir()
    yield out
    stable = STABLE_OUT / request.node.name
    shutil.rmtree(stable, ignore_errors=True)
    shutil.copytree(out, stable)
    print(f"\nUI screenshots: {out} (copy: {stable})")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _default_sigint() -> None:
    # A background job of a non-interactive shell inherits SIGINT as ignored; `dagster dev` forwards
    # a shutdown to its children as SIGINT, which they would then never see.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _stop_sensors(env: dict[str, str]) -> None:
    """Stop every sensor of the definitions in the instance, before the daemon first ticks."""
    names = [s.name for s in defs.sensors]
    procs = [subprocess.Popen([sys.executable, "-m", "dagster", "sensor", "stop", name, "-w", "workspace.yaml"],
                              cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for name in names]
    for name, proc in zip(names, procs):
        out = proc.communicate(timeout=120)[0]
        assert proc.returncode == 0, f"could not stop sensor {name}:\n{out[-3000:]}"


def _instance_info(url: str) -> str:
    request = urllib.request.Request(f"{url}/graphql", data=json.dumps({"query": "{ instance { info } }"}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.load(response)["data"]["instance"]["info"] or ""


def _wait_until_serving(proc: subprocess.Popen, ui: DagsterUI) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"dagster dev exited with {proc.returncode}:\n{ui.log_tail()}")
        try:
            info = _instance_info(ui.url)
        except (OSError, ValueError, KeyError):  # not up yet
            time.sleep(0.3)
            continue
        # Two webservers can end up listening on one port (seen with a leftover `dagster dev`):
        # make sure this one is ours.
        assert str(ui.dagster_home) in info, f"{ui.url} serves another Dagster instance:\n{info[:1000]}"
        return
    pytest.fail(f"dagster dev did not serve {ui.url} within {SERVER_START_TIMEOUT}s:\n{ui.log_tail()}")


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGTERM the server's process group (webserver, daemon, code servers, run workers), then SIGKILL."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass
    try:  # whatever is left of the group (a child outliving `dagster dev`), or dagster dev itself
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=10)


@pytest.fixture
def dagster_ui(tmp_path, monkeypatch, ui_out) -> DagsterUI:
    visit_home, dagster_home = tmp_path / "visit_home", tmp_path / "dagster_home"
    shutil.copytree(settings.sample_dataset(), visit_home / "datasets" / "sample")
    dagster_home.mkdir()
    shutil.copyfile(REPO / "dagster.yaml", dagster_home / "dagster.yaml")
    env_vars = {"VISIT_HOME": str(visit_home), "DAGSTER_HOME": str(dagster_home), "OMP_WAIT_POLICY": "PASSIVE",
                "VISIT_LLM_BACKEND": "echo", "HF_HUB_OFFLINE": "1"}
    for name, value in env_vars.items():  # the test process runs assets in-process with the same settings
        monkeypatch.setenv(name, value)
    for name in ("VISIT_STORE", "VISIT_DATASETS"):
        monkeypatch.delenv(name, raising=False)
    env = dict(os.environ)

    # One process creates the storage first: several CLIs racing on a fresh SQLite home corrupt
    # its schema version table ("more than one head").
    instance = dg.DagsterInstance.from_config(str(dagster_home))
    port = _free_port()
    ui = DagsterUI(url=f"http://127.0.0.1:{port}", instance=instance, visit_home=visit_home,
                   dagster_home=dagster_home, log=tmp_path / "dagster-dev.log")
    proc = None
    try:
        instance.add_dynamic_partitions("dataset", ["sample"])
        _stop_sensors(env)
        with open(ui.log, "wb") as log_file:
            proc = subprocess.Popen(
                [sys.executable, "-m", "dagster", "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
                cwd=REPO, env=env, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, preexec_fn=_default_sigint,
            )
        _wait_until_serving(proc, ui)
        yield ui
    finally:
        if proc is not None:
            _kill_group(proc)
        instance.dispose()
        if ui.log.exists():
            shutil.copyfile(ui.log, ui_out / ui.log.name)


@pytest.fixture(autouse=True)
def chromium_present() -> None:
    """First of all (before the server starts): no Chromium is a failure, never a skip."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: the UI test needs Debian's chromium (apt-get install chromium; "
                    ".ci/run installs it before `make test`). No browser is downloaded.", pytrace=False)


@pytest.fixture
def browser_context(ui_out):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
        try:
            context = browser.new_context(viewport={"width": 1600, "height": 1000})
            # The "Join the Dagster community" dialog is shown once per browser (this flag) and instance.
            context.add_init_script("window.localStorage.setItem('communityNux', JSON.stringify('1'))")
            context.set_default_timeout(30_000)
            yield context
            context.close()
        finally:
            browser.close()


@pytest.fixture
def page(browser_context, ui_out, request):
    page = browser_context.new_page()
    # Should the onboarding dialog still appear (a new flag name), dismiss it whenever it overlays a click.
    page.add_locator_handler(page.get_by_role("dialog").filter(has_text="Join the Dagster community"),
                             lambda dialog: dialog.get_by_role("button", name="Skip").click())
    yield page
    if request.node.stash.get(_FAILED, False):
        page.screenshot(path=str(ui_out / "failure.png"), full_page=True)
