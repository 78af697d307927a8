"""What every benchmark writes with its figures: the machine's facts, and its section of
docs/benchmarks.md (between `<!-- NAME:begin -->` and `<!-- NAME:end -->`) rendered from its result file."""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def machine() -> dict:
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = re.search(r"model name\s*:\s*(.*)", cpuinfo)
    return {"cpu": model.group(1) if model else platform.processor(), "cores": os.cpu_count(),
            "python": platform.python_version()}


def write_section(name: str, body: str, heading: str) -> None:
    """Replace the section between NAME's markers with `body`, or append it under `heading`."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    text = DOCS.read_text()
    section = f"{begin}\n{body}\n{end}"
    if begin in text:
        text = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: section, text, flags=re.S)
    else:
        text += f"\n## {heading}\n\n{section}\n"
    DOCS.write_text(text)
