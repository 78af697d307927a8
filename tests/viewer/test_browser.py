"""The image page in headless Chromium (Debian's /usr/bin/chromium, never a downloaded browser):
each drawn box sits where the stored box is, scaled as the image is displayed; the checkbox hides
them; every request the page makes goes to the viewer on 127.0.0.1."""

from __future__ import annotations

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


@pytest.fixture(scope="module")
def server(app):
    """The viewer on a free loopback port. The socket listens before the thread starts, so the
    browser's first connection waits in its backlog instead of racing the start-up."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    srv = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))  # the app is shared
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    srv.should_exit = True
    thread.join(timeout=30)
    sock.close()


def test_boxes_are_drawn_on_the_stored_boxes_and_nothing_leaves_loopback(server, sample_store, db):
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing (apt-get install chromium); no browser is downloaded", pytrace=False)
    from playwright.sync_api import expect, sync_playwright

    grouped = ParquetStore(sample_store.store).read_shards("grouped_metadata", "sample", range(4))
    image_id = grouped.filter(grouped["image_key"] == sample_store.hostile_image)["image_id"][0]
    image = queries.image(db, "sample", image_id)
    assert len(image["boxes"]) >= 2
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
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
        finally:
            browser.close()
    assert any(urlsplit(u).path == f"/image-file/sample/{image_id}" for u in requested), requested
    assert {urlsplit(u).hostname for u in requested} == {"127.0.0.1"}, requested
