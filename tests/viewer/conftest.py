"""One real store for every viewer test: the embedded sample through the whole graph, every LLM
request answered by the stand-in (rehearsal.run, ~20-40 s on 2 cores), built once per session.

One caption of the copied sample is hostile (markup and odd Unicode), so the pages are checked
against text a user really could have in their metadata.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from visit_assets import rehearsal, settings
from visit_assets.lib.catalog import build_catalog
from visit_assets.lib.standin.faults import FaultPlan

HOSTILE = "<script>alert(1)</script> A smiling astronaut «naïve ﬁle» 🚀 מימין\u202e evil\u202c zero\u200bwidth & co"
HOSTILE_IMAGE = "astronaut.jpg"
# The second version of `edited`: the hostile caption replaced by this one (markup again).
NEW_CAPTION = "An astronaut waves <b>hello</b> from the new version & smiles"
INGEST = ["source_records", "grouped_metadata", "metadata_rejects", "vlm_descriptions", "image_descriptions"]
# Content faults so that every reject stage has rows; no transport faults (slow replies, 5xx retries
# only cost time here).
FAULTS = FaultPlan({k: v for k, v in rehearsal.DEFAULT_FAULTS.items() if k not in ("slow", "server_error")})


@dataclass(frozen=True)
class SampleStore:
    home: Path
    store: Path
    catalog: Path
    hostile: str = HOSTILE  # the first caption of hostile_image
    hostile_image: str = HOSTILE_IMAGE


@dataclass(frozen=True)
class EditedStore:
    home: Path
    store: Path
    caption: str = NEW_CAPTION  # the new first caption of HOSTILE_IMAGE


def hostile_sample(target: Path) -> Path:
    """A copy of the sample whose first caption of HOSTILE_IMAGE is HOSTILE."""
    shutil.copytree(settings.sample_dataset(), target)
    path = target / "annotations" / "captions.json"
    data = json.loads(path.read_text())
    image = next(i["id"] for i in data["images"] if i["file_name"] == HOSTILE_IMAGE)
    next(a for a in data["annotations"] if a["image_id"] == image)["caption"] = HOSTILE
    path.write_text(json.dumps(data, ensure_ascii=False))
    return target


def build_sample_store(home: Path) -> SampleStore:
    """The whole graph on the hostile sample, in `home` (its store, exports and catalog)."""
    source = hostile_sample(home.parent / f"{home.name}-dataset")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setattr(settings, "sample_dataset", lambda: source)  # rehearsal.run copies this folder
        rehearsal.run(home, FAULTS, log=lambda _: None)
    store = home / "store"
    return SampleStore(home=home, store=store, catalog=build_catalog(store))


@pytest.fixture(scope="session")
def sample_store(tmp_path_factory) -> SampleStore:
    return build_sample_store(tmp_path_factory.mktemp("viewer") / "home")


@pytest.fixture(scope="session")
def reader(sample_store):
    from visit_assets.viewer.reader import Reader

    r = Reader(sample_store.store, sample_store.home / "datasets")
    yield r
    r.close()


@pytest.fixture
def db(reader):
    with contextlib.closing(reader.db()) as d:
        yield d


@pytest.fixture(scope="session")
def app(sample_store):
    from visit_assets.viewer.app import create_app

    return create_app(sample_store.store, sample_store.home / "datasets")


@pytest.fixture(scope="session")
def client(app):
    from starlette.testclient import TestClient

    with TestClient(app, base_url="http://127.0.0.1") as c:  # the only host names the app answers
        yield c


@pytest.fixture(scope="session")
def edited(sample_store, tmp_path_factory) -> EditedStore:
    """A copy of the session store (and its datasets) with a second version of `sample`: the hostile
    caption replaced by NEW_CAPTION. Only the ingest assets run again (a few seconds, no LLM): the
    conversations stay as of the first version, which the diff finds "earlier" and compares as equal."""
    import dagster as dg

    from visit_assets.definitions import defs
    from visit_assets.runner import run_dataset

    home = tmp_path_factory.mktemp("versions") / "home"
    for part in ("store", "datasets"):
        shutil.copytree(sample_store.home / part, home / part, symlinks=True)
    path = home / "datasets" / "sample" / "annotations" / "captions.json"
    data = json.loads(path.read_text())
    next(a for a in data["annotations"] if a["caption"] == sample_store.hostile)["caption"] = NEW_CAPTION
    path.write_text(json.dumps(data, ensure_ascii=False))
    with pytest.MonkeyPatch.context() as mp, dg.instance_for_test() as instance:
        mp.setenv("VISIT_HOME", str(home))
        for var in ("VISIT_STORE", "VISIT_DATASETS"):
            mp.delenv(var, raising=False)
        run_dataset(defs, "sample", instance, only=INGEST, log=lambda _: None)
    return EditedStore(home=home, store=home / "store")


@pytest.fixture(scope="session")
def edited_app(edited):
    from visit_assets.viewer.app import create_app

    return create_app(edited.store, edited.home / "datasets")
