"""LLaVA export: schema, versioned folders, checksums, round trip, no overwrite."""

from __future__ import annotations

import copy
import json

import pytest

from visit_assets.lib.ids import file_sha256
from visit_assets.lib.instructify.export import (
    ExportExistsError,
    ExportInvalidError,
    export_summary,
    read_export,
    to_llava,
    validate_llava,
    write_export,
)
from visit_assets.lib.instructify.sampling import sample_conversations


@pytest.fixture(scope="module")
def conversations(sample_records, registry, fakes):
    recs = [sample_records[k] for k in ("astronaut.jpg", "coffee.jpg", "rocket_launch.jpg")]
    convs, _ = sample_conversations(recs, registry, fakes.LLM(), seed=0)
    assert convs
    return convs


def test_to_llava_is_valid(conversations):
    items = to_llava(conversations)
    assert validate_llava(items) == []
    assert [set(i) for i in items] == [{"id", "image", "conversations"}] * len(items)
    assert items[0]["id"] == conversations[0]["conversation_id"]
    assert items[0]["image"] == conversations[0]["image_key"]


def _item(**over):
    item = {"id": "a", "image": "x.jpg", "conversations": [
        {"from": "human", "value": "<image>\nWhat is it?"}, {"from": "gpt", "value": "A cat."},
        {"from": "human", "value": "Where?"}, {"from": "gpt", "value": "On a mat."}]}
    item.update(over)
    return item


def _turns(*pairs):
    return [{"from": f, "value": v} for f, v in pairs]


@pytest.mark.parametrize("items, fragment", [
    ({"not": "a list"}, "JSON list"),
    (["str"], "not an object"),
    ([_item(id="")], "id must be"),
    ([_item(image=None)], "image must be"),
    ([_item(extra=1)], "unexpected keys"),
    ([_item(conversations=[])], "non-empty list"),
    ([_item(conversations=_turns(("gpt", "<image>\nHi"), ("human", "Hi")))], "expected 'human'"),
    ([_item(conversations=_turns(("human", "<image>\nHi")))], "odd number"),
    ([_item(conversations=_turns(("human", "Hi"), ("gpt", "Yo")))], "exactly once, found 0"),
    ([_item(conversations=_turns(("human", "<image><image>\nHi"), ("gpt", "Yo")))], "exactly once, found 2"),
    ([_item(conversations=_turns(("human", "<image>\n"), ("gpt", "Yo")))], "no text besides"),
    ([_item(conversations=_turns(("human", "<image>\nHi"), ("gpt", "Yo"), ("human", "<image>\nAgain"), ("gpt", "No")))],
     "only allowed in the first"),
    ([_item(conversations=_turns(("human", "<image>\nHi"), ("gpt", "  ")))], "empty value"),
    ([_item(conversations=[{"from": "human", "value": "<image>\nHi", "x": 1}, {"from": "gpt", "value": "Yo"}])],
     "{from, value}"),
    ([_item(), _item()], "duplicate id a"),
])
def test_validate_catches(items, fragment):
    problems = validate_llava(items)
    assert any(fragment in p for p in problems), problems


def test_write_read_round_trip_and_manifest(tmp_path, conversations):
    items = to_llava(conversations)
    fields = export_summary(conversations)
    manifest = write_export(items, tmp_path / "exports", fields)
    folder = tmp_path / "exports" / manifest["version"]
    assert sorted(p.name for p in folder.iterdir()) == ["llava.json", "manifest.json"]
    back, man = read_export(folder)
    assert back == items and man == manifest
    assert man["files"]["llava.json"]["sha256"] == file_sha256(folder / "llava.json")
    assert man["counts"] == {"conversations": len(items), "images": 3, "turns": sum(len(i["conversations"]) for i in items),
                             "qa_pairs": sum(len(i["conversations"]) for i in items) // 2}
    assert man["models"] == sorted({c["model"] for c in conversations})
    assert {p["id"] for p in man["prompt_versions"]} == {c["prompt_id"] for c in conversations}
    [mix] = man["prompt_mixes"]  # the mix the prompt types were drawn from
    assert mix["profile"] == "instructify" and mix["weights"]["complex_reasoning"] == 0.4873
    assert json.loads((folder / "llava.json").read_text()) == items
    # no temporary folders left behind
    assert [p.name for p in (tmp_path / "exports").iterdir()] == [manifest["version"]]


def test_same_content_is_idempotent_different_content_is_a_new_version(tmp_path, conversations):
    items = to_llava(conversations)
    root = tmp_path / "exports"
    m1 = write_export(items, root, {"note": "a"})
    assert write_export(items, root, {"note": "a"}) == m1  # a re-run: same folder, same bytes, no error
    m2 = write_export(items[:-1], root, {"note": "a"})
    m3 = write_export(items, root, {"note": "b"})
    assert len({m1["version"], m2["version"], m3["version"]}) == 3
    assert len(list(root.iterdir())) == 3


def test_refuses_to_overwrite_a_changed_folder(tmp_path, conversations):
    items = to_llava(conversations)
    root = tmp_path / "exports"
    m = write_export(items, root, {})
    data = root / m["version"] / "llava.json"
    data.write_text(data.read_text().replace("<image>", "<image> ", 1))
    with pytest.raises(ExportExistsError):
        write_export(items, root, {})
    with pytest.raises(ValueError, match="sha256"):
        read_export(root / m["version"])
    (root / m["version"] / "stray.txt").write_text("x")
    with pytest.raises(ExportExistsError):
        write_export(items, root, {})


def test_refuses_invalid_items_and_reserved_fields(tmp_path, conversations):
    items = copy.deepcopy(to_llava(conversations))
    items[0]["conversations"][1]["value"] = ""
    with pytest.raises(ExportInvalidError, match="empty value"):
        write_export(items, tmp_path, {})
    assert not any(tmp_path.iterdir())
    with pytest.raises(ValueError, match="may not set"):
        write_export(to_llava(conversations), tmp_path, {"counts": 1})


def test_an_invalid_export_says_which_stage_made_the_bad_items():
    from visit_assets.lib.instructify.export import invalid_items_report, to_llava

    def conversation(cid, recipe, first, source=None):
        return {"conversation_id": cid, "image_key": "a.jpg", "recipe": recipe, "source": source,
                "turns": [{"from": "human", "value": first}, {"from": "gpt", "value": "An answer."}]}

    good = [conversation("g1", "instructify", "<image>\nWhat is it?")]
    assert invalid_items_report(to_llava(good), good) is None
    rows = good + [conversation("i1", "imported", "What is it?", "flat.parquet"),
                   conversation("i2", "imported", "Where?", "flat.parquet"),
                   conversation("m1", "mm-instruct", "<image><image> Why?")]
    report = invalid_items_report(to_llava(rows), rows)
    assert report.startswith("3 of 4 items are not valid LLaVA, made by imported (flat.parquet): 2, mm-instruct: 1.")
    assert "i1: <image> must occur exactly once, found 0" in report
    assert "m1: <image> must occur exactly once, found 2" in report
