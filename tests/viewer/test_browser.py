"""The image page in headless Chromium (Debian's /usr/bin/chromium, never a downloaded browser):
each drawn box sits where the stored box is, scaled as the image is displayed; the checkbox hides
them; the versions pages put two versions side by side; every request the pages make goes to the
viewer on 127.0.0.1."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from urllib.parse import urlsplit

import pytest
import uvicorn

from visit_assets.lib.storage import ParquetStore
from visit_assets.viewer import queries

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@contextlib.contextmanager
def serve(app):
    """`app` on a free loopback port. The socket listens before the thread starts, so the browser's
    first connection waits in its backlog instead of racing the start-up."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    srv = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))  # the app is shared
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        srv.should_exit = True
        thread.join(timeout=30)
        sock.close()


@pytest.fixture(scope="module")
def server(app):
    with serve(app) as url:
        yield url


def _browser(p):
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing (apt-get install chromium); no browser is downloaded", pytrace=False)
    return p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)


def test_boxes_are_drawn_on_the_stored_boxes_and_nothing_leaves_loopback(server, sample_store, db):
    from playwright.sync_api import expect, sync_playwright

    grouped = ParquetStore(sample_store.store).read_shards("grouped_metadata", "sample", range(4))
    image_id = grouped.filter(grouped["image_key"] == sample_store.hostile_image)["image_id"][0]
    image = queries.image(db, "sample", image_id)
    assert len(image["boxes"]) >= 2
    with sync_playwright() as p:
        browser = _browser(p)
        try:
            # Narrower than the image: it is shown scaled down, and so must the boxes be.
            page = browser.new_page(viewport={"width": 420, "height": 900})
            requested = []
            page.on("request", lambda r: requested.append(r.url))
            page.goto(f"{server}/image/sample/{image_id}")
            page.wait_for_function("() => { const i = document.getElementById('picture'); "
                                   "return i.complete && i.naturalWidth > 0; }")
            shown = page.locator("#picture").bounding_box()
            sx, sy = shown["width"] / image["width"], shown["height"] / image["height"]
            assert 0.3 < sx < 0.95 and sy == pytest.approx(sx, rel=0.01)
            rects = page.locator("svg.overlay rect")
            assert rects.count() == len(image["boxes"])
            # The outline is drawn centred on the edge, in screen pixels (non-scaling stroke), and is
            # part of the bounding box: half of it lies outside the box on each side.
            half = rects.first.evaluate("r => parseFloat(getComputedStyle(r).strokeWidth)") / 2
            for i, b in enumerate(image["boxes"]):
                drawn = rects.nth(i).bounding_box()
                assert rects.nth(i).get_attribute("data-label") == b["label"]
                assert drawn["x"] + half == pytest.approx(shown["x"] + b["x1"] * image["width"] * sx, abs=1)
                assert drawn["y"] + half == pytest.approx(shown["y"] + b["y1"] * image["height"] * sy, abs=1)
                assert drawn["width"] - 2 * half == pytest.approx((b["x2"] - b["x1"]) * image["width"] * sx, abs=1)
                assert drawn["height"] - 2 * half == pytest.approx((b["y2"] - b["y1"]) * image["height"] * sy, abs=1)
            page.locator("#show-boxes").uncheck()
            expect(page.locator("svg.overlay")).to_be_hidden()
            page.locator("#show-boxes").check()
            expect(page.locator("svg.overlay")).to_be_visible()
            page.goto(f"{server}/versions/sample")  # one version: the page says so, and loads nothing else
            expect(page.locator("p.message")).to_contain_text("only one version")
        finally:
            browser.close()
    assert any(urlsplit(u).path == f"/image-file/sample/{image_id}" for u in requested), requested
    assert {urlsplit(u).hostname for u in requested} == {"127.0.0.1"}, requested


def test_two_versions_are_shown_side_by_side_and_nothing_leaves_loopback(edited, edited_app):
    """The diff page links to the changed image's side-by-side view, whose old and new columns sit
    next to each other, each with its own caption shown as text."""
    from playwright.sync_api import expect, sync_playwright

    with serve(edited_app) as server, sync_playwright() as p:
        browser = _browser(p)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            requested = []
            page.on("request", lambda r: requested.append(r.url))
            page.goto(f"{server}/versions/sample")
            page.locator("table.images-affected a.side-by-side").first.click()
            article = page.locator("#asset-grouped_metadata article.item-changed")
            old, new = article.locator(".side-old"), article.locator(".side-new")
            expect(old.locator("li.caption").first).to_contain_text("<script>alert(1)</script>")
            expect(new.locator("li.caption").first).to_have_text(edited.caption)
            left, right = old.bounding_box(), new.bounding_box()
            assert left["x"] + left["width"] <= right["x"] and left["y"] == right["y"]
        finally:
            browser.close()
    assert any(urlsplit(u).path.startswith("/versions/sample/image/") for u in requested), requested
    assert {urlsplit(u).hostname for u in requested} == {"127.0.0.1"}, requested
