from collections import Counter

import pytest
import yaml

from visit_assets.lib.mminstruct.seeds import DEFAULT_SEEDS_PATH, SeedFileError, load_seed_file, load_seeds, seeds_version


def test_shipped_seeds_are_valid(seeds):
    assert len(seeds) >= 45  # the paper started from 43
    ids = [s.id for s in seeds]
    assert len(set(ids)) == len(ids)
    categories, _ = load_seed_file()
    used = Counter(s.category for s in seeds)
    assert set(used) == set(categories), "every declared category has at least one seed"
    assert len(categories) >= 12
    for s in seeds:
        assert s.category in categories and len(s.text.split()) >= 5


def test_shipped_seeds_are_general(seeds):
    """Seeds are tasks about 'this image/scene/picture/photo', not bare description requests."""
    for s in seeds:
        low = s.text.lower()
        assert any(w in low for w in ("image", "scene", "picture", "photo", "shot")), s.id
        assert not low.startswith("describe the image"), s.id


def _write(tmp_path, data, text=None):
    p = tmp_path / "seeds.yaml"
    p.write_text(text if text is not None else yaml.safe_dump(data), encoding="utf-8")
    return p


GOOD = {"categories": {"poem": "verse", "story": "fiction"},
        "seeds": [{"id": "a", "category": "poem", "text": "Write a haiku about this image."},
                  {"id": "b", "category": "story", "text": "Write a short story inspired by this image."}]}


@pytest.mark.parametrize("mutate, needle", [
    (lambda d: d["seeds"].append({"id": "a", "category": "poem", "text": "Write a sonnet about this image."}),
     "duplicate id"),
    (lambda d: d["seeds"].append({"id": "c", "category": "essay", "text": "Write an essay about this image."}),
     "unknown category"),
    (lambda d: d["seeds"].append({"id": "c", "category": "poem", "text": "  "}), "empty text"),
    (lambda d: d["seeds"].append({"id": "Bad Id", "category": "poem", "text": "Write an ode to this image."}), "not a slug"),
    (lambda d: d["seeds"].append({"id": "c", "category": "poem", "text": "Write a haiku about  this image."}), "same text"),
    (lambda d: d.pop("categories"), "categories"),
])
def test_bad_seed_files_are_rejected(tmp_path, mutate, needle):
    import copy

    data = copy.deepcopy(GOOD)
    mutate(data)
    with pytest.raises(SeedFileError, match=needle):
        load_seeds(_write(tmp_path, data))


def test_version_is_content_hash(tmp_path):
    p = _write(tmp_path, GOOD)
    v = seeds_version(p)
    assert v == seeds_version(p)
    p.write_text("# a comment\n" + p.read_text(), encoding="utf-8")
    assert seeds_version(p) == v, "comments do not change the data version"
    import copy

    data = copy.deepcopy(GOOD)
    data["seeds"][0]["text"] = "Write a haiku about the mood of this image."
    assert seeds_version(_write(tmp_path, data)) != v
    assert seeds_version() == seeds_version(DEFAULT_SEEDS_PATH)


def test_visit_seeds_file_points_at_the_users_own_seeds(tmp_path, monkeypatch):
    from visit_assets.lib.mminstruct import seeds as seeds_mod

    shipped = seeds_mod.seeds_version()
    own = tmp_path / "my_seeds.yaml"
    text = seeds_mod.DEFAULT_SEEDS_PATH.read_text(encoding="utf-8")
    first = seeds_mod.load_seeds()[0]
    own.write_text(text.replace(first.text, first.text.rstrip(".?") + " in one sentence.", 1), encoding="utf-8")
    monkeypatch.setenv(seeds_mod.SEEDS_ENV, str(own))
    assert seeds_mod.default_path() == own
    assert seeds_mod.load_seeds()[0].text.endswith("in one sentence.")
    assert seeds_mod.seeds_version() != shipped
