"""The real thing users start: `dagster dev` (webserver + daemon, code server, run workers) on a free
127.0.0.1 port, with a private DAGSTER_HOME made from the repo's dagster.yaml. Shared by the UI test
(tests/ui) and the daemon tests (tests/daemon).
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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

REPO = Path(__file__).resolve().parents[1]
SERVER_START_TIMEOUT = 120


class DagsterDevError(RuntimeError):
    pass


@dataclass
class DagsterDev:
    url: str
    instance: dg.DagsterInstance
    dagster_home: Path
    log: Path
    proc: subprocess.Popen | None = None

    def log_tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else "(no server log)"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _default_sigint() -> None:
    # A background job of a non-interactive shell inherits SIGINT as ignored; `dagster dev` forwards
    # a shutdown to its children as SIGINT, which they would then never see.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _instance_info(url: str) -> str:
    request = urllib.request.Request(f"{url}/graphql", data=json.dumps({"query": "{ instance { info } }"}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.load(response)["data"]["instance"]["info"] or ""


def _wait_until_serving(dev: DagsterDev) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while time.monotonic() < deadline:
        if dev.proc.poll() is not None:
            raise DagsterDevError(f"dagster dev exited with {dev.proc.returncode}:\n{dev.log_tail()}")
        try:
            info = _instance_info(dev.url)
        except (OSError, ValueError, KeyError):  # not up yet
            time.sleep(0.3)
            continue
        # Two webservers can end up listening on one port (seen with a leftover `dagster dev`):
        # make sure this one is ours.
        if str(dev.dagster_home) not in info:
            raise DagsterDevError(f"{dev.url} serves another Dagster instance:\n{info[:1000]}")
        return
    raise DagsterDevError(f"dagster dev did not serve {dev.url} within {SERVER_START_TIMEOUT}s:\n{dev.log_tail()}")


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


@contextmanager
def dagster_dev(dagster_home: Path, log: Path, env: dict[str, str],
                before_start: Callable[[dg.DagsterInstance], None] | None = None) -> Iterator[DagsterDev]:
    """Starts Dagster's dev server (webserver + daemon) on a free 127.0.0.1 port, its instance in `dagster_home`.

    `before_start(instance)` runs once the instance exists and before the daemon first ticks."""
    dagster_home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(REPO / "dagster.yaml", dagster_home / "dagster.yaml")
    env = {**env, "DAGSTER_HOME": str(dagster_home)}
    # One process creates the storage first: several CLIs racing on a fresh SQLite home corrupt
    # its schema version table ("more than one head").
    instance = dg.DagsterInstance.from_config(str(dagster_home))
    dev = DagsterDev(url=f"http://127.0.0.1:{free_port()}", instance=instance, dagster_home=dagster_home, log=log)
    try:
        if before_start:
            before_start(instance)
        port = dev.url.rsplit(":", 1)[1]
        with open(log, "wb") as log_file:
            dev.proc = subprocess.Popen(
                [sys.executable, "-m", "dagster", "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", port],
                cwd=REPO, env=env, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, preexec_fn=_default_sigint,
            )
        _wait_until_serving(dev)
        yield dev
    finally:
        if dev.proc is not None:
            _kill_group(dev.proc)
        instance.dispose()
