"""The Visual Genome loader's columnar annotation path gives exactly the frames of the row-by-row
loader it replaced (_vg_reference.py, kept for this test only): every fixture, plus seeded
synthetic files with every kind of bad input, on both the typed and the generic decode."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import _vg_reference as reference
import msgspec
import polars as pl
import pytest

from visit_assets.lib.metadata.loaders import visual_genome as vg

DATA = Path(__file__).parent.parent / "data" / "loaders" / "visual_genome"
NAMES = ("image_data.json", "objects.json", "question_answers.json", "region_descriptions.json")


def _same(path: Path, source: str) -> None:
    new, old = vg.load_visual_genome(path, source), reference.load_visual_genome(path, source)
    assert new.schema == old.schema
    assert new.equals(old, null_equal=True), f"{source}: {new} != {old}"


def _all_files(folder: Path, monkeypatch, generic: bool) -> None:
    if generic:  # both modules decode generically
        for module in (vg, reference):
            monkeypatch.setattr(module, "_ENTRIES", msgspec.json.Decoder(list[int]))
    for name in NAMES:
        if (folder / name).is_file():
            _same(folder / name, f"{folder.name}/{name}")


@pytest.mark.parametrize("generic", [False, True])
@pytest.mark.parametrize("case", sorted(p.name for p in DATA.iterdir()))
def test_fixtures_give_the_reference_frames(case, generic, monkeypatch):
    _all_files(DATA / case, monkeypatch, generic)


# -- synthetic files ------------------------------------------------------------------------------

_WORDS = "man TV dog a the on red  big\tsky NASA tree. x".split(" ")
_ODD = [None, True, False, "7", 3.5, 2.0, [], {}, [1], -1, 0, "", "  ", "é", -0.0, 1e308]
_HUGE = [2**63, 2**64, 2**70]  # ids only: the reference cannot hold a huge width either


def _text(rng: random.Random) -> object:
    roll = rng.random()
    if roll < 0.1:
        return rng.choice(_ODD)
    n = rng.choice([1, 2, 3, 5, 12, 13, 20]) if roll < 0.3 else rng.randint(1, 6)
    text = " ".join(rng.choice(_WORDS) for _ in range(n))
    return text + rng.choice(["", ".", " .", ". ", "..", "?"])


def _num(rng: random.Random, positive: bool = False) -> object:
    roll = rng.random()
    if roll < 0.08:
        return rng.choice(_ODD)
    if roll < 0.15:
        return rng.choice([0, 0.0, -3, -0.5])
    value = rng.randint(1, 500) if positive else rng.randint(0, 500)
    return value + 0.5 if rng.random() < 0.2 else value


def _id(rng: random.Random, pool: list[int]) -> object:
    roll = rng.random()
    if roll < 0.05:
        return rng.choice([*_ODD, *_HUGE])
    if roll < 0.15 and pool:
        return rng.choice(pool)  # a duplicate
    pool.append(rng.randint(1, 10**6))
    return pool[-1]


def _images(rng: random.Random, n: int) -> list:
    out: list = []
    for i in range(1, n + 1):
        entry = {"width": _num(rng, True) if rng.random() < 0.1 else 800, "height": 600, "image_id": i,
                 "url": f"https://cs.stanford.edu/people/rak248/VG_100K{rng.choice(['', '_2'])}/{i}.jpg",
                 "coco_id": rng.choice([None, i, -1, "5", True]), "flickr_id": None}
        roll = rng.random()
        if roll < 0.1:
            entry["url"] = rng.choice([None, "", "  ", 5, "../../etc/passwd", "/abs.jpg", "http://x/a/b;p?q=1#f",
                                       " https://h/VG_100K/%2e%2e/x.jpg ", "https://h//VG_100K//3.jpg/", "https://h/../.."])
        elif roll < 0.13:
            entry["image_id"] = rng.choice([None, "3", 2.0, True, 1])  # 1: a repeated image id
        elif roll < 0.15:
            del entry["image_id"]
            entry["id"] = i
        out.append(entry)
    return [*out, 7, {"url": "https://h/a/b.jpg", "width": 1, "height": 1}]


def _item(rng: random.Random, role: str, entry_image: object, ids: list[int], odd: bool) -> object:
    if odd and rng.random() < 0.02:
        return rng.choice([None, 5, "x", [1]])  # not an object
    key = {"objects": "object_id", "regions": "region_id", "qas": "qa_id"}[role]
    item: dict = {key: _id(rng, ids)}
    roll = rng.random()
    item["image_id"] = (entry_image if roll < 0.8 else rng.choice([entry_image, 999_999, None, "1", 2**64, 3, 1]))
    if roll > 0.97:
        del item["image_id"]
    if role == "objects":
        item["names"] = [_text(rng)] if rng.random() < 0.8 else rng.choice([[_text(rng), "b"], [], None, "man", [None]])
        item.update(x=_num(rng), y=_num(rng), w=_num(rng, True), h=_num(rng, True), synsets=["x.n.01"])
    elif role == "regions":
        item["phrase"] = _text(rng)
        item.update(x=_num(rng), y=_num(rng), width=_num(rng, True), height=_num(rng, True))
    else:
        item.update(question=_text(rng), answer=_text(rng), q_objects=[])
    for k in list(item):
        if k != key and rng.random() < 0.02:
            del item[k]
    return item


def _annotations(rng: random.Random, role: str, n_images: int, n_entries: int, odd_entries: bool) -> list:
    ids: list[int] = []
    out: list = []
    for index in range(n_entries):
        image = rng.choice([*range(1, n_images + 3), None, "2", 2**65]) if rng.random() < 0.1 \
            else rng.randint(1, n_images)
        entry: dict = {"id": image} if role != "objects" else {"image_id": image}
        if role == "objects" and rng.random() < 0.05:
            entry = {"id": image}
        if rng.random() < 0.03:
            entry = {"image_id": image}  # no list
        else:
            entry[role] = [_item(rng, role, image, ids, odd_entries) for _ in range(rng.randint(0, 6))]
        if odd_entries and rng.random() < 0.03:
            out.append(rng.choice([None, 3, "entry", [1, 2]]))
        if odd_entries and rng.random() < 0.03:
            entry[role] = "not a list"
        out.append(entry)
        del index
    return out


def _write(folder: Path, seed: int, odd_entries: bool) -> None:
    rng = random.Random(seed)
    folder.mkdir(parents=True)
    n_images = 80
    (folder / "image_data.json").write_text(json.dumps(_images(rng, n_images)))
    for role, name in (("objects", "objects.json"), ("regions", "region_descriptions.json"),
                       ("qas", "question_answers.json")):
        data = _annotations(rng, role, n_images, 120, odd_entries)
        if role == "regions" and data and isinstance(data[0], dict) and data[0].get("regions") == []:
            data[0]["regions"] = [{"region_id": 1, "phrase": "a", "image_id": 1, "x": 0, "y": 0, "width": 1,
                                   "height": 1}]
        (folder / name).write_text(json.dumps(data))


@pytest.mark.parametrize("generic", [False, True])
@pytest.mark.parametrize("odd_entries", [False, True])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_synthetic_bad_inputs_give_the_reference_frames(tmp_path, seed, odd_entries, generic, monkeypatch):
    folder = tmp_path / "vg"
    _write(folder, seed, odd_entries)
    _all_files(folder, monkeypatch, generic)
    # the same annotations without their image list, then with an unusable one
    (folder / "image_data.json").unlink()
    _all_files(folder, monkeypatch, generic)
    (folder / "image_data.json").write_text("{not json")
    _all_files(folder, monkeypatch, generic)


def test_synthetic_files_reach_every_reject_reason(tmp_path):
    """The synthetic files are worth comparing: they hit every reason the loader gives."""
    folder = tmp_path / "vg"
    _write(folder, 1, True)
    frames = [reference.load_visual_genome(folder / n, n) for n in NAMES]
    reasons = set(pl.concat(frames)["reject_reason"].drop_nulls())
    assert reasons >= {"invalid_record", "duplicate_record_id", "unknown_image_id", "box_out_of_bounds",
                       "text_too_long", "unsafe_path"}
    shutil.rmtree(folder)


def test_bench_sized_urls_give_the_reference_keys():
    """Image keys from urls: the fast split equals urlparse's on every url shape."""
    urls = [f"https://cs.stanford.edu/people/rak248/VG_100K{s}/{i}.jpg" for i in range(0, 108_077, 7) for s in ("", "_2")]
    urls += ["http://x/a/b;p?q=1#f", " https://h/VG_100K/1.jpg ", "https://h//VG_100K//3.jpg/", "VG_100K/1.jpg",
             "a.jpg", "https://h", "https://h/", "file:///a/b/c.jpg", "https://h/a/b.jpg?x=/c/d", "https://h/a/b.jpg#/e/f",
             "https://h/a%2Fb/c.jpg", "\thttps://h/a/\nb.jpg", "https://[::1]/a/b.jpg", "//h/a/b.jpg", "https://h/a/b;x/c.jpg",
             "HTTPS://H/A/B.JPG", "https://user@h:80/a/b.jpg", "https://h/./a/../b.jpg", "mailto:a/b", "https:/a/b/c.jpg"]
    for url in urls:
        assert vg.image_key_from_url(url) == reference.image_key_from_url(url), url
