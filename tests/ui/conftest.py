"""The Dagster UI for real: `dagster dev` (webserver + daemon) on loopback, driven by headless Chromium.

`dagster_ui` starts the server (tests/dagster_dev.py) on a free 127.0.0.1 port with a private DAGSTER_HOME (the repo's
dagster.yaml: queued runs, so the daemon must run) and a private VISIT_HOME holding the sample
dataset, registered as a `dataset` partition. The sensors (on by default) are stopped before the
daemon starts: otherwise the folder sensor ingests the sample on its own and the automation sensor
then regenerates everything below it, racing the clicks and eating the two CI cores.

`page` is a Playwright page in Debian's /usr/bin/chromium (never a downloaded browser). A missing
Chromium is a failure, not a skip: .ci/run installs it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/dagster_dev.py, whatever the import mode
from dagster_dev import DagsterDevError, dagster_dev  # noqa: E402

from visit_assets import settings  # noqa: E402
from visit_assets.definitions import defs  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
STABLE_OUT = REPO / "bench" / "out" / "ui"  # git-ignored; a copy of the screenshots that outlives tmp_path
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


def _stop_sensors(env: dict[str, str]) -> None:
    """Stop every sensor of the definitions in the instance, before the daemon first ticks."""
    names = [s.name for s in defs.sensors]
    procs = [subprocess.Popen([sys.executable, "-m", "dagster", "sensor", "stop", name, "-w", "workspace.yaml"],
                              cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for name in names]
    for name, proc in zip(names, procs, strict=True):
        out = proc.communicate(timeout=120)[0]
        assert proc.returncode == 0, f"could not stop sensor {name}:\n{out[-3000:]}"


@pytest.fixture
def dagster_ui(tmp_path, monkeypatch, ui_out) -> DagsterUI:
    visit_home, dagster_home = tmp_path / "visit_home", tmp_path / "dagster_home"
    shutil.copytree(settings.sample_dataset(), visit_home / "datasets" / "sample")
    env_vars = {"VISIT_HOME": str(visit_home), "DAGSTER_HOME": str(dagster_home), "OMP_WAIT_POLICY": "PASSIVE",
                "VISIT_LLM_BACKEND": "echo", "HF_HUB_OFFLINE": "1"}
    for name, value in env_vars.items():  # the test process runs assets in-process with the same settings
        monkeypatch.setenv(name, value)
    for name in ("VISIT_STORE", "VISIT_DATASETS"):
        monkeypatch.delenv(name, raising=False)
    env = dict(os.environ)

    def prepare(instance: dg.DagsterInstance) -> None:
        instance.add_dynamic_partitions("dataset", ["sample"])
        _stop_sensors({**env, "DAGSTER_HOME": str(dagster_home)})

    log = tmp_path / "dagster-dev.log"
    try:
        with dagster_dev(dagster_home, log, env, before_start=prepare) as dev:
            yield DagsterUI(url=dev.url, instance=dev.instance, visit_home=visit_home, dagster_home=dagster_home,
                            log=log)
    except DagsterDevError as e:
        pytest.fail(str(e))
    finally:
        if log.exists():
            shutil.copyfile(log, ui_out / log.name)


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
