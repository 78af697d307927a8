"""The versions pages: a copy of the session store gets a second dataset version in which one known
caption changed (the hostile one, so the old side also shows that it is escaped); the pages must
show that image as changed for the reason "metadata", and both captions side by side. The session
store itself has a single version: its pages say so instead of failing."""

from __future__ import annotations

import html
import re

import pytest
from starlette.testclient import TestClient

from visit_assets import settings
from visit_assets.lib import versions
from visit_assets.lib.storage import ParquetStore


def _image_id(store, key: str) -> str:
    grouped = ParquetStore(store).read_shards("grouped_metadata", "sample", range(settings.n_shards()))
    return grouped.filter(grouped["image_key"] == key)["image_id"][0]


@pytest.fixture(scope="module")
def edited_client(edited_app):
    with TestClient(edited_app, base_url="http://127.0.0.1") as c:
        yield c


def test_the_versions_page_shows_the_edited_image_changed_for_metadata(edited, edited_client, sample_store):
    store = edited.store
    old, new = versions.latest_versions(store, "sample")
    astronaut = _image_id(store, sample_store.hostile_image)
    page = edited_client.get("/versions/sample")  # defaults: the newest version and the one before
    assert page.status_code == 200
    text = page.text
    assert f"<code>{old}</code> (old) to <code>{new}</code> (new)" in text
    summary = re.search(r'<tr class="asset-grouped_metadata">(.*?)</tr>', text, re.S).group(1)
    assert re.findall(r'<td class="n (\w+)">(\d+)</td>', summary)[:3] == [("added", "0"), ("removed", "0"),
                                                                         ("changed", "1")]
    assert '<span class="mono">metadata</span> 1' in summary
    section = text.split('id="asset-grouped_metadata"')[1].split("</section>")[0]
    assert f'href="/image/sample/{astronaut}"' in section
    assert f'href="/versions/sample/image/{astronaut}?old={old}&amp;new={new}"' in section
    examples = section.split('class="examples"')[1]
    assert re.search(rf'change-changed">changed</span></td><td class="mono">{astronaut}</td>.*?'
                     r'<td class="mono">metadata</td><td class="mono">captions</td>', examples, re.S)
    # Picked explicitly, the other way round: the same image, changed for the same reason.
    back = edited_client.get("/versions/sample", params={"old": new, "new": old}).text
    assert f"<code>{new}</code> (old) to <code>{old}</code> (new)" in back and astronaut in back
    assert f'<option value="{old}" selected>' in back and f'<option value="{new}" selected>' in back


def test_one_image_side_by_side_shows_the_old_and_the_new_caption(edited, edited_client, sample_store):
    store = edited.store
    old, new = versions.latest_versions(store, "sample")
    astronaut = _image_id(store, sample_store.hostile_image)
    # The image page links to it: the dataset has two versions now.
    assert f'href="/versions/sample/image/{astronaut}"' in edited_client.get(f"/image/sample/{astronaut}").text
    r = edited_client.get(f"/versions/sample/image/{astronaut}", params={"old": old, "new": new})
    assert r.status_code == 200
    assert f"<h1>{sample_store.hostile_image} in two versions</h1>" in r.text
    item = r.text.split('id="asset-grouped_metadata"')[1].split("</article>")[0]
    assert 'change-changed">changed</span>' in item and '<span class="mono reasons">metadata</span>' in item
    old_side, new_side = item.split('class="side side-old"')[1].split('class="side side-new"')
    assert f'<li class="caption">{html.escape(sample_store.hostile)}</li>' in old_side
    assert f'<li class="caption">{html.escape(edited.caption)}</li>' in new_side
    assert sample_store.hostile not in r.text and "<b>hello</b>" not in r.text  # escaped, never markup
    assert '<dt class="changed">captions</dt>' in new_side
    # Its conversations were not re-run: shown in both versions, unchanged.
    conversations = r.text.split('id="asset-generated_conversations"')[1].split("</section>")[0]
    assert conversations.count('change-unchanged">unchanged</span>') >= 1
    assert 'class="turn turn-gpt"' in conversations
    assert "change-changed" not in conversations and "change-added" not in conversations
    assert edited_client.get("/versions/sample/image/nosuch").status_code == 404


def test_a_dataset_of_one_version_says_so(client, app, sample_store):
    [only] = versions.latest_versions(sample_store.store, "sample")
    astronaut = _image_id(sample_store.store, sample_store.hostile_image)
    for url in ("/versions/sample", f"/versions/sample/image/{astronaut}"):
        r = client.get(url)
        assert r.status_code == 200, url
        assert f"Dataset sample has only one version ({only}): there is nothing to compare." in r.text, url
    assert 'class="versions-link" href="/versions/sample"' in client.get("/?dataset=sample").text
    assert "/versions/sample/image/" not in client.get(f"/image/sample/{astronaut}").text  # no second version
    assert client.get("/versions/nosuch").status_code == 404
    for name in (".hidden", "a b", "sample.."):  # names the store refuses reach the check, not a 500
        assert client.get(f"/versions/{name}").status_code == 404, name


def test_versions_that_cannot_be_compared_are_a_400_page(edited_client):
    r = edited_client.get("/versions/sample", params={"old": "<i>x</i>"})
    assert r.status_code == 400 and "has no dataset version" in r.text
    assert "&lt;i&gt;x&lt;/i&gt;" in r.text and "<i>x</i>" not in r.text
