"""The viewer's pages through Starlette's TestClient, on the real sample store: every page answers,
text from the metadata is escaped, the image route serves registered images only, the export
preview is the exporter's own bytes, and Dagster's materializations link to the viewer."""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qs, urlsplit

import dagster as dg
import pytest

from visit_assets import cli, settings
from visit_assets.lib.instructify.export import DATA_FILE, read_export
from visit_assets.lib.storage import ParquetStore
from visit_assets.viewer.app import create_app

pytestmark = pytest.mark.xdist_group("viewer_app")  # its module fixtures (a sample run) built once


@pytest.fixture(scope="module")
def astronaut(sample_store) -> str:
    grouped = ParquetStore(sample_store.store).read_shards("grouped_metadata", "sample", range(4))
    return grouped.filter(grouped["image_key"] == sample_store.hostile_image)["image_id"][0]


@pytest.fixture(scope="module")
def export(sample_store):
    [folder] = (sample_store.home / "exports" / "sample").iterdir()
    items, _ = read_export(folder)
    return folder, items


def test_every_page_answers(client, astronaut, export):
    _, items = export
    for url in ("/", "/?dataset=sample", "/browse", "/browse?status=rejected&page=2", "/browse?page=x",
                f"/image/sample/{astronaut}", f"/conversation/sample/{items[0]['id']}.json", "/versions/sample",
                f"/versions/sample/image/{astronaut}"):
        r = client.get(url)
        assert r.status_code == 200, url
        assert "script-src" not in r.headers["content-security-policy"]  # default-src 'none' covers scripts
        assert r.headers["content-security-policy"].startswith("default-src 'none'")
    assert client.get("/image/sample/0000000000000000").status_code == 404
    assert client.get("/", headers={"host": "attacker.example"}).status_code == 400  # DNS rebinding


def test_metadata_text_is_escaped(client, astronaut, sample_store):
    page = client.get(f"/image/sample/{astronaut}").text
    assert sample_store.hostile.startswith("<script>alert(1)</script>") and "<script" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert sample_store.hostile.split("</script>")[1].replace("&", "&amp;") in page  # Unicode kept, & escaped
    hits = client.get("/browse", params={"text": "alert(1)"}).text  # the search box echoes the query
    assert "<script" not in hits


def test_the_image_page_draws_each_box_in_image_pixels(client, astronaut, db):
    from visit_assets.viewer import queries

    image = queries.image(db, "sample", astronaut)
    page = client.get(f"/image/sample/{astronaut}").text
    assert f'viewBox="0 0 {image["width"]} {image["height"]}"' in page
    rects = re.findall(r'<rect x="([\d.]+)" y="([\d.]+)" width="([\d.]+)" height="([\d.]+)"', page)
    expected = [(b["x1"] * image["width"], b["y1"] * image["height"], (b["x2"] - b["x1"]) * image["width"],
                 (b["y2"] - b["y1"]) * image["height"]) for b in image["boxes"]]
    assert [float(v) for r in rects for v in r] == pytest.approx([v for box in expected for v in box])


def test_the_image_route_serves_registered_images_only(client, app, sample_store, astronaut, tmp_path):
    served = client.get(f"/image-file/sample/{astronaut}")
    assert served.status_code == 200 and served.headers["content-type"] == "image/jpeg"
    assert served.content == (sample_store.home / "datasets" / "sample" / "images" / sample_store.hostile_image).read_bytes()
    for url in ("/image-file/sample/..%2F..%2F..%2Fetc%2Fpasswd", "/image-file/..%2Fstore/" + astronaut,
                "/image-file/sample/%2Fetc%2Fpasswd", "/image-file/nosuch/" + astronaut):
        assert client.get(url).status_code == 404, url
    # A registered key whose file is a link out of the image folder is not served either.
    datasets = tmp_path / "datasets"
    (datasets / "sample" / "images").mkdir(parents=True)
    secret = tmp_path / "secret.txt"
    secret.write_text("not an image")
    (datasets / "sample" / "images" / sample_store.hostile_image).symlink_to(secret)
    from starlette.testclient import TestClient

    with TestClient(create_app(sample_store.store, datasets), base_url="http://127.0.0.1") as other:
        r = other.get(f"/image-file/sample/{astronaut}")
        assert r.status_code == 404 and b"not an image" not in r.content


def test_the_export_preview_is_the_exporters_bytes(client, export):
    folder, items = export
    written = (folder / DATA_FILE).read_text(encoding="utf-8")
    for item in items[:5]:
        preview = client.get(f"/conversation/sample/{item['id']}.json")
        assert preview.headers["content-type"] == "application/json"
        assert json.loads(preview.text) == [item]
        body = preview.text.strip()[1:-1].strip("\n")  # the item, at the indentation llava.json has it
        assert body in written
    assert client.get("/conversation/sample/nosuch.json").status_code == 404


def test_dagster_materializations_link_to_the_viewer(sample_store):
    home = sample_store.home / "dagster_home"
    with dg.DagsterInstance.from_config(str(home)) as instance:
        links = {key: instance.get_latest_materialization_event(dg.AssetKey(key)).asset_materialization
                 .metadata["viewer"].value for key in ("grouped_metadata", "visit_export")}
    for key, link in links.items():
        url = urlsplit(link)
        assert f"{url.scheme}://{url.netloc}" == f"http://127.0.0.1:{settings.VIEWER_PORT}", key
        assert parse_qs(url.query)["dataset"] == ["sample"]
    assert urlsplit(links["visit_export"]).path == "/browse"


def test_the_command_serves_on_loopback(monkeypatch, sample_store):
    import uvicorn

    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(kw, app=app))
    monkeypatch.setenv("VISIT_HOME", str(sample_store.home))
    monkeypatch.setenv("VISIT_STORE", str(sample_store.store))
    assert cli.main(["viewer", "--port", "8799"]) == 0
    assert seen["host"] == "127.0.0.1" and seen["port"] == 8799
    assert seen["app"].state.reader.store == sample_store.store.resolve()
    seen["app"].state.reader.close()
