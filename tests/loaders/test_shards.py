"""Web-scale shards read in place: an img2dataset-style WebDataset tar and a Parquet shard of image
bytes ingest, group and open for QC / CLIP without a single file extracted."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from tests.loaders.conftest import check_records
from visit_assets.lib.metadata import image_store
from visit_assets.lib.metadata.dataset import load_dataset, read_layout
from visit_assets.lib.metadata.grouping import QCConfig, group_records
from visit_assets.lib.metadata.images import probe_images
from visit_assets.lib.metadata.loaders import registry
from visit_assets.lib.metadata.paths import UnsafePath


def jpeg(width: int, height: int, color: str) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, "JPEG")
    return buf.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def meta(key: str, caption: str, status: str = "success", **more) -> bytes:
    """img2dataset's per-sample json (its field names)."""
    return json.dumps({"url": f"https://example.com/{key}.jpg", "caption": caption, "key": key, "status": status,
                       "error_message": None if status == "success" else "HTTP 404", **more}).encode()


def write_tar(path: Path) -> None:
    """Two downloaded samples, a failed one (json + txt, no image, as img2dataset's status says),
    and a json-only sample with a success status but no image member. Beside it img2dataset's
    metadata-only Parquet of every sample, one failed download listed there only."""
    with tarfile.open(path, "w") as tar:
        for key, (w, h, color) in {"000000000": (160, 120, "red"), "000000001": (128, 200, "blue")}.items():
            _add(tar, f"{key}.jpg", jpeg(w, h, color))
            _add(tar, f"{key}.txt", f"a {color} square on a plain background".encode())
            _add(tar, f"{key}.json", meta(key, f"a {color} square on a plain background", width=w, height=h,
                                          original_width=w * 2, original_height=h * 2))
        _add(tar, "000000002.txt", b"a picture that never downloaded")
        _add(tar, "000000002.json", meta("000000002", "a picture that never downloaded", "failed_to_download"))
        _add(tar, "000000003.json", meta("000000003", "metadata without its picture here"))
    statuses = {"000000000": "success", "000000001": "success", "000000002": "failed_to_download",
                "000000004": "failed_to_download"}
    pq.write_table(pa.table({"key": list(statuses), "status": list(statuses.values()),
                             "caption": [f"caption {k}" for k in statuses],
                             "error_message": [None if v == "success" else "HTTP 404" for v in statuses.values()]}),
                   path.with_suffix(".parquet"))


def write_parquet(path: Path) -> None:
    """img2dataset's `output_format parquet` shape: key, jpg bytes (null when failed), txt, status."""
    table = pa.table({"key": ["100", "101", "102"], "jpg": [jpeg(110, 140, "green"), jpeg(150, 100, "white"), None],
                      "txt": ["a green rectangle standing upright", "a white rectangle lying flat", "lost"],
                      "status": ["success", "success", "failed_to_download"], "width": [110, 150, None],
                      "height": [140, 100, None]})
    pq.write_table(table, path, row_group_size=2)


@pytest.fixture
def shard_dataset(tmp_path):
    root = tmp_path / "webshards"
    (root / "images").mkdir(parents=True)
    write_tar(root / "images" / "00000.tar")
    write_parquet(root / "images" / "00001.parquet")
    return root


def files_in(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")}


def test_tar_shard_loads_samples_with_captions_and_rejects(shard_dataset):
    tar = shard_dataset / "images" / "00000.tar"
    assert registry.detect(tar).format == "webdataset"
    df = check_records(registry.get("webdataset").load(tar, "images/00000.tar"), "webdataset")
    images = df.filter(pl.col("kind") == "image")
    assert images.height == 5  # every sample accounted for, the one only the sidecar lists too
    ok = images.filter(pl.col("reject_reason").is_null())
    assert ok["image_key"].to_list() == ["000000000.jpg", "000000001.jpg"]
    assert ok["width"].to_list() == [160, 128] and ok["height"].to_list() == [120, 200]
    # img2dataset writes the caption to .txt and to the json: one caption row, not two
    assert df.filter(pl.col("kind") == "caption", pl.col("reject_reason").is_null()).height == 2
    rejected = df.filter(pl.col("reject_reason").is_not_null())
    assert set(rejected["reject_reason"]) == {"image_missing"}
    assert any("failed_to_download" in d for d in rejected["reject_detail"])
    assert any("no image" in d for d in rejected["reject_detail"])
    assert df.filter(pl.col("record_id") == "images/00000.tar#image/000000004")["reject_reason"].to_list() == [
        "image_missing"]


def test_parquet_shard_detected_over_records_and_loaded(shard_dataset):
    path = shard_dataset / "images" / "00001.parquet"
    assert registry.detect(path).format == "parquet_images"
    df = check_records(registry.get("parquet_images").load(path, "images/00001.parquet"), "parquet_images")
    ok = df.filter(pl.col("kind") == "image", pl.col("reject_reason").is_null())
    assert ok["image_key"].to_list() == ["100", "101"]
    assert df.filter(pl.col("reject_reason") == "image_missing")["record_id"].str.contains("#.*/102").all()


def test_ingest_groups_shards_in_place_without_extracting(shard_dataset):
    before = files_in(shard_dataset)
    layout = read_layout(shard_dataset)
    assert {layout.source_name(p) for p, _ in layout.sources} == {"images/00000.tar", "images/00001.parquet"}
    assert [layout.source_name(p) for p in layout.companions] == ["images/00000.parquet"]  # img2dataset's sidecar
    records = load_dataset(layout, n_shards=1)
    keys = set(records["image_key"].drop_nulls())
    assert keys == {"00000.tar/000000000.jpg", "00000.tar/000000001.jpg", "00001.parquet/100", "00001.parquet/101"}
    probes = probe_images(layout.images_dir, sorted(keys))
    assert probes["image_reason"].null_count() == probes.height
    assert dict(zip(probes["image_key"], probes["file_width"], strict=True))["00001.parquet/100"] == 110
    grouped, rejects = group_records(records, probes, QCConfig())
    assert grouped.height == 4
    assert all(len(c) == 1 for c in grouped["captions"].to_list())
    # every record lands in grouped or rejects (nothing lost), rejects say why
    assert set(rejects["reason"]) >= {"image_missing"}
    assert files_in(shard_dataset) == before  # nothing extracted


def test_tar_index_built_once_and_members_opened(shard_dataset):
    images = shard_dataset / "images"
    keys = ["00000.tar/000000000.jpg", "00000.tar/000000001.jpg"] * 5
    before = image_store.index_builds
    assert [image_store.image_size(images, k) for k in keys[:2]] == [(160, 120), (128, 200)]
    probe_images(images, keys)
    assert image_store.index_builds - before == 1
    with pytest.raises(image_store.ImageNotFound):
        image_store.read_bytes(images, "00000.tar/nope.jpg")
    assert not image_store.exists(images, "00000.tar/000000002.jpg")


def test_keys_escaping_the_folder_are_refused(shard_dataset, tmp_path):
    images = shard_dataset / "images"
    write_tar(tmp_path / "outside.tar")
    for key in ("../../outside.tar/000000000.jpg", "/etc/passwd", "00000.tar/../../../outside.tar/000000000.jpg"):
        with pytest.raises(UnsafePath):
            image_store.read_bytes(images, key)
    (images / "link.tar").symlink_to(tmp_path / "outside.tar")
    with pytest.raises(UnsafePath):
        image_store.read_bytes(images, "link.tar/000000000.jpg")
    assert probe_images(images, ["link.tar/000000000.jpg"])["image_reason"].to_list() == ["unsafe_path"]


def test_a_tar_member_named_to_escape_is_never_addressable(tmp_path):
    with tarfile.open(tmp_path / "evil.tar", "w") as tar:
        _add(tar, "../escape.jpg", jpeg(100, 100, "red"))
    assert image_store.tar_index(tmp_path / "evil.tar") == {}


def test_clip_preprocessing_of_a_member_key(shard_dataset):
    open_clip = pytest.importorskip("open_clip")
    from visit_assets.lib.models.image_prep import ImagePrep

    prep = ImagePrep(open_clip.image_transform(224, is_train=False))
    ref = image_store.ImageRef(shard_dataset / "images", "00000.tar/000000001.jpg")
    tensor, err = prep.item(ref)
    assert err is None and tuple(tensor.shape) == (3, 224, 224)
    _, err = prep.item(image_store.ImageRef(shard_dataset / "images", "../x.tar/a.jpg"))
    assert err and "UnsafePath" in err


def test_viewer_serves_a_member_from_its_shard(shard_dataset, tmp_path):
    from visit_assets.viewer.reader import Reader

    reader = Reader(tmp_path / "no-store", shard_dataset.parent)
    try:
        data = reader.image_file("webshards", "00000.tar/000000001.jpg")
        assert isinstance(data, bytes) and Image.open(io.BytesIO(data)).size == (128, 200)
        for key in ("00000.tar/nope.jpg", "../outside.tar/a.jpg"):
            with pytest.raises(FileNotFoundError):
                reader.image_file("webshards", key)
    finally:
        reader.close()


def test_parquet_rows_open_by_key_and_by_row_index(tmp_path):
    pq.write_table(pa.table({"image": [{"bytes": jpeg(120, 130, "black"), "path": "a.jpg"}],
                             "text": ["a black square"]}), tmp_path / "hf.parquet")
    assert registry.detect(tmp_path / "hf.parquet").format == "parquet_images"  # Hugging Face's struct column
    df = registry.get("parquet_images").load(tmp_path / "hf.parquet", "hf.parquet")
    assert df.filter(pl.col("kind") == "image")["image_key"].to_list() == ["0"]
    assert image_store.image_size(tmp_path, "hf.parquet/0") == (120, 130)
