"""Loader plugins: the example of docs/loaders.md, installed as that page says (an entry point in
the `visit_assets.loaders` group of an installed distribution), reads a dataset folder; and the
registry's rules (names, detection ties, companions) hold."""

import re
import sys
from pathlib import Path

import polars as pl
import pytest

from visit_assets.lib.metadata import dataset as dataset_mod
from visit_assets.lib.metadata.loaders import load_source, registry
from visit_assets.lib.metadata.loaders.registry import Loader, LoaderError

DOC = Path(__file__).resolve().parents[1] / "docs" / "loaders.md"


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", DOC.read_text(encoding="utf-8"), re.DOTALL)


def _install(tmp_path: Path, monkeypatch, name: str, entry_points: str, module: str | None = None) -> None:
    """What `pip install` of the user's package leaves: the module and a dist-info with its entry points."""
    site = tmp_path / "site"
    dist = site / f"{name}-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(entry_points)
    if module:
        (site / "my_loaders.py").write_text(module)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, "my_loaders", raising=False)
    registry.available.cache_clear()


@pytest.fixture(autouse=True)
def fresh_registry():
    registry.available.cache_clear()
    yield
    registry.available.cache_clear()


def _entry_points_from_the_doc() -> str:
    toml = _blocks("toml")[0]  # [project.entry-points."visit_assets.loaders"] as the user writes it
    lines = [ln for ln in toml.splitlines() if "=" in ln]
    return "[visit_assets.loaders]\n" + "\n".join(ln.replace('"', "") for ln in lines) + "\n"


def test_the_guides_loader_reads_a_dataset_folder_once_installed(tmp_path, monkeypatch):
    _install(tmp_path, monkeypatch, "my-loaders", _entry_points_from_the_doc(), _blocks("python")[0])
    loader = registry.available()["tsv_captions"]
    assert loader.origin == "plugin my-loaders" and ".tsv" in registry.metadata_suffixes()

    root = tmp_path / "photos"
    (root / "images").mkdir(parents=True)
    (root / "captions.tsv").write_text("a.jpg\tA red kite over a beach.\nb.jpg\tTwo dogs on a sofa.\n"
                                       "a.jpg\tA kite in the wind.\n\tno image here\n", encoding="utf-8")
    layout = dataset_mod.read_layout(root)
    assert [layout.source_name(p) for p, _ in layout.sources] == ["captions.tsv"]  # found by its suffix
    records = load_source(root / "captions.tsv", "captions.tsv")  # format detected: the plugin's signature
    assert set(records["source_format"]) == {"tsv_captions"}
    kinds = records.group_by("kind").len().sort("kind").rows()
    assert kinds == [("caption", 4), ("image", 2)]
    rejected = records.filter(pl.col("reject_reason").is_not_null())
    assert rejected.height == 1 and rejected["reject_detail"][0].startswith("line 4")  # kept, with its reason


def test_a_plugin_may_not_take_a_built_in_name_or_be_something_else(tmp_path, monkeypatch):
    module = "from visit_assets.lib.metadata.loaders.registry import Loader\ncoco = Loader('coco', print)\nnot_one = 42\n"
    _install(tmp_path / "a", monkeypatch, "shadow", "[visit_assets.loaders]\ncoco = my_loaders:coco\n", module)
    with pytest.raises(LoaderError, match="plugin shadow registers a loader named 'coco'"):
        registry.available()
    _install(tmp_path / "b", monkeypatch, "odd", "[visit_assets.loaders]\nodd = my_loaders:not_one\n", module)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if "/a/site" not in p])
    registry.available.cache_clear()
    with pytest.raises(LoaderError, match="is not a Loader"):
        registry.available()


def test_a_tie_between_loaders_is_a_reject_row_that_says_to_name_the_format(tmp_path, monkeypatch):
    twin = Loader("coco_twin", registry.get("coco").load, lambda path, head: registry.STRUCTURE if b"annotations" in head
                  else registry.NO)
    monkeypatch.setattr(registry, "_builtin", lambda: [*__import__(
        "visit_assets.lib.metadata.loaders.builtin", fromlist=["LOADERS"]).LOADERS, twin])
    registry.available.cache_clear()
    f = tmp_path / "ann.json"
    f.write_text('{"images": [], "annotations": []}')
    row = load_source(f, "ann.json").row(0, named=True)
    assert row["reject_reason"] == "ambiguous_format" and "coco and coco_twin" in row["reject_detail"]
    assert load_source(f, "ann.json", "coco_twin")["reject_reason"].null_count() == 0  # named: no detection


def test_companions_are_versioned_but_never_loaded_on_their_own(tmp_path, monkeypatch):
    pair = Loader("pair", lambda path, source: registry.get("records").load(path, source),
                  lambda path, head: registry.SIGNATURE if path.name == "main.jsonl" else registry.NO,
                  companions=lambda path: [path.with_name("extra.jsonl")], suffixes=(".jsonl",))
    monkeypatch.setattr(registry, "_builtin", lambda: [pair])
    registry.available.cache_clear()
    root = tmp_path / "ds"
    root.mkdir()
    (root / "main.jsonl").write_text("")
    (root / "extra.jsonl").write_text('{"a": 1}\n')
    layout = dataset_mod.read_layout(root)
    assert [p.name for p, _ in layout.sources] == ["main.jsonl"] and [p.name for p in layout.companions] == ["extra.jsonl"]
    before = dataset_mod.dataset_version(layout)
    (root / "extra.jsonl").write_text('{"a": 2}\n')
    assert dataset_mod.dataset_version(dataset_mod.read_layout(root)) != before
