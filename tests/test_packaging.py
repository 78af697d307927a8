"""A wheel install works without the source tree: the SQL templates, prompt files, seed data and
the embedded sample are package data, and the catalog finds its SQL inside the installed package
(the k8s image installs the wheel, not the checkout)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGED = ["visit_assets/sql/*.sql", "visit_assets/prompts/**/*", "visit_assets/data/*", "visit_assets/sample_data/**/*",
            "visit_assets/viewer/templates/*.html"]


def test_the_wheel_carries_the_data_files_and_the_catalog_reads_them_from_it(tmp_path):
    src = tmp_path / "src"  # a copy: a build writes build/ and *.egg-info next to pyproject.toml
    shutil.copytree(REPO / "visit_assets", src / "visit_assets", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copyfile(REPO / name, src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path / "dist"), str(src)], check=True, capture_output=True, timeout=300)
    [wheel] = (tmp_path / "dist").glob("visit_assets-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for pattern in PACKAGED:
        in_tree = {p.relative_to(REPO).as_posix() for p in REPO.glob(pattern)
                   if p.is_file() and "__pycache__" not in p.parts}
        assert in_tree, pattern
        assert in_tree <= names, f"{pattern}: not in the wheel: {sorted(in_tree - names)[:5]}"

    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = ("from visit_assets.lib.catalog import SQL_DIR; import sys; "
            "print(SQL_DIR.resolve(), sorted(p.name for p in SQL_DIR.glob('*.sql')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env={"PYTHONPATH": str(site)},
                         check=True, capture_output=True, text=True).stdout
    assert out.startswith(str(site.resolve())), out
    assert "['asset_views.sql', 'catalog.sql', 'lineage.sql', 'version_diff.sql']" in out, out
