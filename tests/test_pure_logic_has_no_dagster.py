import subprocess
import sys
from pathlib import Path

import visit_assets


def test_lib_imports_without_dagster():
    """Pure logic must stay importable (and testable) without Dagster."""
    lib = Path(visit_assets.__file__).parent / "lib"
    modules = sorted(
        "visit_assets." + ".".join(p.relative_to(lib.parent).with_suffix("").parts)
        for p in lib.rglob("*.py") if p.name != "__init__.py"
    )
    code = "import sys\n" + "".join(f"import {m}\n" for m in modules) + \
        "bad = [m for m in sys.modules if m == 'dagster' or m.startswith('dagster.')]\nprint(bad)\nassert not bad, bad\n"
    subprocess.run([sys.executable, "-c", code], check=True)
