"""Progress of in-process runs on the terminal: one line per run, and the LLM batches' progress.

The runs of `visit-assets run` keep Dagster's console logger at WARNING (their full logs are in the
instance, for the UI). What the terminal shows comes from a Python logging handler given to the
instance the runs record into (`attached`): Dagster hands it every record of `context.log`, and it
prints only the LLM batch lines (`run_llm_batch` in visit_assets/defs/llm/resources.py), compactly:

    [run 5/12] wave 2 · sample|1 · grouped_metadata, metadata_rejects, ... started
      generated_instructions · instructions: 6/16 (38%) · 2 cached · 1.90 req/s · 180 tok/s · ETA 5 s
      generated_instructions · instructions: 16 requests · 2 cached · 14 sent · 1302 tokens out · 41.0 tok/s
    [run 5/12] wave 2 · sample|1 · done in 9.8 s

The handler changes nothing about the runs: same job, same run config, same events in the instance.
"""

from __future__ import annotations

import ast
import logging
import re
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

# The messages of run_llm_batch (visit_assets/defs/llm/resources.py).
_PROGRESS = re.compile(
    r"^\[(?P<label>[^\]]+)\] (?P<done>\d+)/(?P<total>\d+) \((?P<pct>\d+)%\) done"
    r"(?:, (?P<hits>\d+) from cache)?(?:, (?P<rate>[\d.]+) req/s)?(?:, (?P<tps>\d+) tok/s)?(?:, ETA (?P<eta>.+?))?$")
_DONE = re.compile(
    r"^\[(?P<label>[^\]]+)\] done: (?P<requests>\d+) requests, (?P<hits>\d+) cache hits, (?P<sent>\d+) sent, "
    r"(?P<tokens>\d+) tokens out at (?P<tps>[\d.]+) tok/s(?:, failures (?P<failures>\{.*\}))?")
_STOPPED = re.compile(r"^\[(?P<label>[^\]]+)\] stopped: (?P<why>.*)$", re.S)


def duration(seconds: float) -> str:
    """4.2 s, 3 min 05 s, 1 h 02 min."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _failures(text: str | None) -> str:
    """"{'truncated': 2, 'error': 1}" -> "truncated 2, error 1"."""
    try:
        counts = ast.literal_eval(text) if text else {}
    except (ValueError, SyntaxError):
        return text or ""
    return ", ".join(f"{k} {v}" for k, v in counts.items() if v) if isinstance(counts, dict) else str(counts)


def llm_line(step: str | None, message: str) -> str | None:
    """The terminal line for one of run_llm_batch's messages ("" for one not worth a line: a
    finished batch's 100 %, its summary follows), or None for any other message."""
    where = f"  {step} · " if step else "  "
    if m := _PROGRESS.match(message):
        if m["done"] == m["total"] != "0":
            return ""  # the batch's summary line follows
        parts = [f"{m['label']}: {m['done']}/{m['total']} ({m['pct']}%)"]
        if m["hits"] is not None:
            parts.append(f"{m['hits']} cached")
        if m["rate"] is not None:
            parts.append(f"{m['rate']} req/s")
        if m["tps"] is not None:
            parts.append(f"{m['tps']} tok/s")
        if m["eta"] is not None:
            parts.append(f"ETA {m['eta']}")
        return where + " · ".join(parts)
    if m := _DONE.match(message):
        parts = [f"{m['label']}: {m['requests']} requests", f"{m['hits']} cached", f"{m['sent']} sent"]
        if m["sent"] != "0":
            parts += [f"{m['tokens']} tokens out", f"{float(m['tps']):.1f} tok/s"]
        failures = _failures(m["failures"])
        if failures:
            parts.append(f"failed: {failures}")
        return where + " · ".join(parts)
    if m := _STOPPED.match(message):
        return f"{where}{m['label']}: STOPPED: {m['why']}"
    return None


class TerminalProgress(logging.Handler):
    """Prints the LLM progress of every run's steps; `line` prints the runner's run lines.

    A batch shows its first line (what is cached), then at most one progress line every
    `every_s` seconds, and its summary: short batches (the sample's rounds) take two lines."""

    def __init__(self, stream: TextIO | None = None, every_s: float = 10.0):
        super().__init__(level=logging.INFO)
        self._stream = stream  # None: sys.stdout at the time of printing (what pytest captures)
        self._lock = threading.Lock()
        self.lines = 0  # LLM lines printed
        self.every_s = every_s
        self._shown: dict[tuple, float] = {}  # (step, batch label) -> when its last progress line was printed

    def _worth_showing(self, step: str | None, message: str) -> bool:
        label = message[1:message.find("]")] if message.startswith("[") else ""
        key, now = (step, label), time.monotonic()
        if not _PROGRESS.match(message):
            self._shown.pop(key, None)  # the batch's summary (or stop): the next batch starts afresh
            return True
        if key in self._shown and now - self._shown[key] < self.every_s:
            return False
        self._shown[key] = now
        return True

    def line(self, text: str) -> None:
        with self._lock:
            stream = self._stream or sys.stdout
            stream.write(text + "\n")
            stream.flush()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            meta = getattr(record, "dagster_meta", None) or {}
            if meta.get("dagster_event") is not None:  # framework events (step start, ...): the UI's
                return
            message = meta.get("orig_message") or record.getMessage()
            text = llm_line(meta.get("step_key"), message)
            if text and self._worth_showing(meta.get("step_key"), message):
                self.line(text)
                self.lines += 1
        except Exception:  # a progress line must never fail a run
            self.handleError(record)


@contextmanager
def attached(instance, handler: logging.Handler) -> Iterator[logging.Handler]:
    """Give `handler` every log record of the runs made through this instance object, in this
    process (Dagster adds the instance's handlers to each run's log manager; `python_logs` in
    dagster.yaml does the same for every process, the daemon's included, which is not wanted here)."""
    original = instance.get_handlers

    def get_handlers():
        return [*original(), handler]

    instance.get_handlers = get_handlers
    try:
        yield handler
    finally:
        try:
            del instance.get_handlers  # back to the class's method
        except AttributeError:
            instance.get_handlers = original
