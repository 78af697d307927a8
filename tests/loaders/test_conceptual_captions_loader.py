"""The conceptual_captions loader on small TSV files in the official CC3M format (no header, caption TAB url)."""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
import pytest

from visit_assets.lib.metadata.dataset import load_dataset, read_layout
from visit_assets.lib.metadata.loaders import detect_format, registry
from visit_assets.lib.metadata.loaders.conceptual_captions import image_key, load_conceptual_captions

DATA = Path(__file__).parent.parent / "data" / "loaders" / "conceptual_captions"
VAL = "good/Validation_GCC-1.1.0-Validation.tsv"
TRAIN = "bad_records/Train_GCC-training.tsv"


@pytest.fixture
def load(loaded):
    """load(...): the loaded and checked frame of one fixture file (conftest.check_records)."""
    def run(name: str) -> pl.DataFrame:
        df = loaded(load_conceptual_captions, DATA / name, name, "conceptual_captions")
        assert set(df["source"]) == {name}
        return df
    return run


def test_good_file_gives_an_image_and_a_caption_per_line(load):
    df = load(VAL)
    lines = (DATA / VAL).read_text(encoding="utf-8").splitlines()
    assert dict(df.group_by("kind").len().rows()) == {"image": 5, "caption": 5}
    assert df["reject_reason"].null_count() == df.height
    images = df.filter(pl.col("kind") == "image")
    assert images["record_id"].to_list() == [f"{VAL}#image/{i}" for i in range(5)]
    assert images["image_key"].to_list() == [f"00000000{i}.jpg" for i in range(5)]
    captions = df.filter(pl.col("kind") == "caption")
    assert captions["record_id"].to_list() == [f"{VAL}#caption/{i}" for i in range(5)]
    assert captions["image_key"].to_list() == images["image_key"].to_list()
    assert captions["text"].to_list()[:4] == [line.split("\t")[0] for line in lines[:4]]
    assert captions["text"][4] == "a sign points the way to the beach"  # whitespace collapsed
    assert df.filter(pl.col("kind") == "image")["width"].null_count() == 5


def test_image_key_is_the_zero_padded_index():
    assert image_key(0) == "000000000.jpg"
    assert image_key(3318332) == "003318332.jpg"


def test_bad_lines_are_rows_with_reasons_and_keep_their_index(load):
    df = load(TRAIN)
    captions = df.filter(pl.col("kind") == "caption")
    got = [(r["record_id"].split("#")[1], r["reject_reason"], r["image_key"]) for r in captions.iter_rows(named=True)]
    assert got == [
        ("caption/0", None, "000000000.jpg"),
        ("caption/1", "invalid_record", None),  # no tab
        ("caption/2", "invalid_record", None),  # three fields (the blank line before is no record)
        ("caption/3", "invalid_record", "000000003.jpg"),  # empty caption: the image is still there
        ("caption/4", "invalid_record", None),  # ftp url
        ("caption/5", "invalid_record", None),  # not UTF-8
        ("caption/6", None, "000000006.jpg"),  # CRLF
        ("caption/7", None, "000000007.jpg"),  # no final newline
    ]
    assert captions["text"][6] == "a windows line end"
    images = df.filter(pl.col("kind") == "image")
    assert images["image_key"].to_list() == ["000000000.jpg", "000000003.jpg", "000000006.jpg", "000000007.jpg"]
    # every non-blank line is accounted for by a caption row
    lines = [ln for ln in (DATA / TRAIN).read_bytes().split(b"\n") if ln.strip()]
    assert captions.height == len(lines)


def test_header_line_is_not_a_record(load):
    df = load("with_header/cc3m_val.tsv")
    assert df.filter(pl.col("kind") == "caption")["text"].to_list() == [
        "author : a life in photography -- in pictures", "a very typical bus station"]
    assert df.filter(pl.col("kind") == "image")["image_key"].to_list() == ["000000000.jpg", "000000001.jpg"]


@pytest.mark.parametrize("content", [b"", b"\n\n  \n", b"\xef\xbb\xbf"])
def test_empty_file_is_one_row(tmp_path, content):
    path = tmp_path / "x.tsv"
    path.write_bytes(content)
    df = load_conceptual_captions(path, "x.tsv")
    assert df["record_id"].to_list() == ["x.tsv#file"]
    assert df["reject_reason"].to_list() == ["malformed_file"]


def test_binary_garbage_is_rejected_per_line(tmp_path):
    path = tmp_path / "x.tsv"
    path.write_bytes(b"\x00\xff\x10\n\x89PNG\r\n")
    df = load_conceptual_captions(path, "x.tsv")
    assert df["kind"].to_list() == ["caption", "caption"]
    assert df["reject_reason"].to_list() == ["invalid_record", "invalid_record"]


def test_detection(tmp_path, claims_on_other_fixtures):
    for name in (VAL, TRAIN, "with_header/cc3m_val.tsv"):
        assert detect_format(DATA / name) == "conceptual_captions"
    loader = registry.get("conceptual_captions")
    cc12m = tmp_path / "cc12m.tsv"  # url first: not this format
    cc12m.write_text("http://example.com/a.jpg\ta caption\n", encoding="utf-8")
    assert loader.detect(cc12m, cc12m.read_bytes()) == 0
    as_json = tmp_path / "captions.json"
    as_json.write_bytes((DATA / VAL).read_bytes())
    assert loader.detect(as_json, as_json.read_bytes()) == 0  # only .tsv files
    assert claims_on_other_fixtures("conceptual_captions", DATA) == []


def test_detection_reads_complete_lines_of_a_long_file(tmp_path):
    path = tmp_path / "Train_GCC-training.tsv"
    line = b"a photo of a long file\thttps://example.com/some/long/path/image.jpg\n"
    path.write_bytes(line * (2 * registry.HEAD_BYTES // len(line)))
    assert detect_format(path) == "conceptual_captions"


def test_tsv_files_are_sources_of_a_dataset(tmp_path):
    root = tmp_path / "cc3m"
    (root / "images").mkdir(parents=True)
    shutil.copy(DATA / VAL, root / "Validation_GCC-1.1.0-Validation.tsv")
    layout = read_layout(root)
    assert [(p.name, f) for p, f in layout.sources] == [("Validation_GCC-1.1.0-Validation.tsv", None)]
    records = load_dataset(layout, n_shards=2)
    assert records.height == 10 and records["reject_reason"].null_count() == 10
    assert set(records["source_format"]) == {"conceptual_captions"}


def test_vectorised_and_line_by_line_paths_agree():
    from visit_assets.lib.metadata.loaders.conceptual_captions import _frame_per_file, _rows_per_line

    buf = b"\n".join(ln for ln in (DATA / TRAIN).read_bytes().split(b"\n") if b"\xff" not in ln)
    buf = b"caption\turl\n" + buf + b"\n\tx\n  \t  \nA  Mixed\tHTTPS://EXAMPLE.COM/U.JPG\n"
    fast = _frame_per_file(buf.decode("utf-8"), "s.tsv")
    slow = pl.DataFrame(_rows_per_line(buf, "s.tsv"), schema=dict.fromkeys(fast.columns, pl.String))
    assert fast.rows() == slow.rows()
    assert fast.height == 14  # 7 lines of the fixture (11 rows), "\tx" (1), a blank pair, the mixed-case url (2)
