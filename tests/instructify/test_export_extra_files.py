"""Extra files (the Parquet copy) are part of an export version and checked like the JSON."""

import io
import json

import polars as pl
import pytest

from visit_assets.lib.instructify.export import ExportExistsError, write_export

ITEM = {"id": "c1", "image": "a.jpg", "conversations": [{"from": "human", "value": "<image>\nWhat is it?"},
                                                        {"from": "gpt", "value": "A cat on a sofa."}]}


def _parquet(rows):
    buf = io.BytesIO()
    pl.DataFrame(rows).write_parquet(buf)
    return buf.getvalue()


def test_extra_files_are_written_checksummed_and_versioned(tmp_path):
    blob = _parquet({"conversation_id": ["c1"]})
    manifest = write_export([ITEM], tmp_path, {"dataset": "d"}, extra_files={"conversations.parquet": blob})
    folder = tmp_path / manifest["version"]
    assert (folder / "conversations.parquet").read_bytes() == blob
    assert set(json.loads((folder / "manifest.json").read_text())["files"]) == {"llava.json", "conversations.parquet"}
    again = write_export([ITEM], tmp_path, {"dataset": "d"}, extra_files={"conversations.parquet": blob})
    assert again["version"] == manifest["version"]  # identical content: same folder, accepted
    other = write_export([ITEM], tmp_path, {"dataset": "d"},
                         extra_files={"conversations.parquet": _parquet({"conversation_id": ["c2"]})})
    assert other["version"] != manifest["version"]  # different bytes: a new version, the old one untouched
    assert (folder / "conversations.parquet").read_bytes() == blob


def test_tampered_version_folder_is_never_overwritten(tmp_path):
    blob = _parquet({"conversation_id": ["c1"]})
    manifest = write_export([ITEM], tmp_path, {}, extra_files={"conversations.parquet": blob})
    (tmp_path / manifest["version"] / "conversations.parquet").write_bytes(b"changed")
    with pytest.raises(ExportExistsError):
        write_export([ITEM], tmp_path, {}, extra_files={"conversations.parquet": blob})
