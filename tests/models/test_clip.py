"""ClipEncoder: the real open_clip path on real image files, with seeded random weights."""

from __future__ import annotations

import numpy as np
import pytest

from visit_assets.lib.ids import file_sha256
from visit_assets.lib.models.clip import ClipEncoder, ClipUnavailableError, split_sentences
from visit_assets.lib.models.clip_cache import cached_checkpoint_for_tag
from visit_assets.lib.models.identity import RANDOM_INIT, UNCONFIGURED
from visit_assets.lib.models.image_prep import ImagePrep

CLIP_ARCH = "ViT-S-32-alt"  # == conftest's clip_arch fixture (asserted below)
GOOD_IMAGES = ("red_circle.jpg", "blue_square.jpg", "tall_stripes.jpg", "rgba_triangle.png", "grey_ellipse.png")
BAD_IMAGES = ("not_an_image.jpg", "truncated.jpg", "missing.jpg")
ALL_IMAGES = GOOD_IMAGES + BAD_IMAGES


def test_fixture_constants_agree(clip_arch, image_names):
    assert clip_arch == CLIP_ARCH and image_names == (GOOD_IMAGES, BAD_IMAGES)


def test_unconfigured_is_unavailable_and_says_so():
    enc = ClipEncoder(CLIP_ARCH)
    assert not enc.available
    assert enc.identity.weights == UNCONFIGURED and not enc.identity.is_real
    assert enc.identity.kind == "clip"
    with pytest.raises(ClipUnavailableError, match="allow_random_init"):
        enc.encode_images(["whatever.jpg"])
    with pytest.raises(ClipUnavailableError, match="pretrained"):
        enc.encode_texts(["a photo"])
    assert enc._model is None


def test_random_init_identity_is_loud_without_loading():
    enc = ClipEncoder(CLIP_ARCH, allow_random_init=True)
    assert enc.available and enc.random_init
    assert enc.identity.weights == RANDOM_INIT and not enc.identity.is_real
    assert enc.identity.name == f"open_clip:{CLIP_ARCH}/{RANDOM_INIT}"
    assert enc._model is None


def test_tag_identity_never_downloads():
    tag = "laion2b_s34b_b79k"
    enc = ClipEncoder("ViT-B-32", pretrained=tag)
    assert enc.available
    assert enc.identity.name == f"open_clip:ViT-B-32/{tag}"
    cached = cached_checkpoint_for_tag("ViT-B-32", tag)
    assert enc.identity.weights == (file_sha256(cached) if cached else f"tag:{tag}")
    assert enc._model is None


@pytest.mark.slow
def test_encode_images_rows_and_errors(clip_random, image_files):
    paths = [image_files[n] for n in ALL_IMAGES]
    emb, errors = clip_random.encode_images(paths)
    assert emb.shape == (len(paths), clip_random.dim) == (8, 256)
    assert emb.dtype == np.float32 and len(errors) == len(paths)
    for name, row, err in zip(ALL_IMAGES, emb, errors, strict=True):
        if name in GOOD_IMAGES:
            assert err is None, (name, err)
            assert np.isfinite(row).all()
            assert abs(float(np.linalg.norm(row)) - 1.0) < 1e-5
        else:
            assert isinstance(err, str) and err, name
            assert np.isnan(row).all(), name
    assert errors[ALL_IMAGES.index("missing.jpg")].startswith("FileNotFoundError")
    assert errors[ALL_IMAGES.index("not_an_image.jpg")].startswith("UnidentifiedImageError")
    assert "truncated" in errors[ALL_IMAGES.index("truncated.jpg")]
    good = emb[[ALL_IMAGES.index(n) for n in GOOD_IMAGES]]
    assert np.linalg.matrix_rank(good) == len(GOOD_IMAGES)  # distinct images, distinct embeddings


@pytest.mark.slow
def test_matches_bare_open_clip_and_is_batch_invariant(clip_random, image_files):
    import torch
    from PIL import Image

    paths = [image_files[n] for n in GOOD_IMAGES]
    emb, _ = clip_random.encode_images(paths)
    with torch.inference_mode():
        x = torch.stack([clip_random.preprocess(Image.open(p)) for p in paths])
        ref = clip_random.model.encode_image(x, normalize=True).numpy()
    np.testing.assert_allclose(emb, ref, atol=1e-5)
    # other batch sizes, no overlap, the DataLoader path and the split (GPU-mode) preprocess agree
    for kwargs in ({"batch_size": 1}, {"batch_size": 8, "num_workers": 0}, {"loader": "dataloader", "num_workers": 1},
                   {"split": True}, {"split": True, "loader": "dataloader", "num_workers": 1}):
        kwargs = dict(kwargs)
        split = kwargs.pop("split", False)
        other = ClipEncoder(CLIP_ARCH, allow_random_init=True, **kwargs)
        other._model, other._preprocess, other._tokenizer = clip_random.model, clip_random.preprocess, clip_random.tokenizer
        if split:
            other._prep = ImagePrep(clip_random.preprocess, split=True)
            assert other.image_prep.pil_stage is not None
        np.testing.assert_allclose(other.encode_images(paths)[0], emb, atol=1e-5, err_msg=str(kwargs))


def test_split_preprocess_is_bit_identical(image_files):
    import open_clip
    from PIL import Image

    preprocess = open_clip.image_transform(224, is_train=False)
    prep = ImagePrep(preprocess, split=True)
    assert prep.pil_stage is not None and len(prep.tensor_stage) == 1
    for name in GOOD_IMAGES:
        arr, err = prep.item(image_files[name])
        assert err is None and arr.dtype == np.uint8 and arr.shape == (224, 224, 3)
        ref = preprocess(Image.open(image_files[name]))
        assert (prep.batch([arr], "cpu", ref.dtype)[0] == ref).all(), name
    assert prep.item(image_files["truncated.jpg"])[0] is None


@pytest.mark.slow
def test_random_init_is_seeded(clip_random, image_files):
    again = ClipEncoder(CLIP_ARCH, allow_random_init=True)
    p = [image_files["red_circle.jpg"]]
    np.testing.assert_array_equal(again.encode_images(p)[0], clip_random.encode_images(p)[0])


@pytest.mark.slow
def test_empty_inputs(clip_random):
    emb, errors = clip_random.encode_images([])
    assert emb.shape == (0, 256) and errors == []
    assert clip_random.encode_texts([]).shape == (0, 256)


@pytest.mark.slow
def test_encode_texts_truncates_long_text(clip_random):
    long = " ".join(["word"] * 500)
    v = clip_random.encode_texts(["a red circle", "a blue square", long])
    assert v.shape == (3, 256) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    # everything after token 77 is cut: appending more words changes nothing
    np.testing.assert_allclose(clip_random.encode_texts([long + " extra tail"])[0], v[2], atol=1e-6)


def test_split_sentences():
    assert split_sentences("One. Two!  Three? Four") == ["One.", "Two!", "Three?", "Four"]
    assert split_sentences("no end mark") == ["no end mark"]
    assert split_sentences("") == [""]
    assert split_sentences("3.5 apples. ok") == ["3.5 apples.", "ok"]


@pytest.mark.slow
def test_encode_long_texts(clip_random):
    sentences = [f"Sentence number {i} describes the picture." for i in range(12)]
    text = " ".join(sentences)
    one = "A single sentence about a cat."
    out = clip_random.encode_long_texts([text, one], max_sentences=10)
    assert out.shape == (2, 256)
    mean = clip_random.encode_texts(sentences[:10]).mean(axis=0)
    np.testing.assert_allclose(out[0], mean / np.linalg.norm(mean), atol=1e-5)
    np.testing.assert_allclose(out[1], clip_random.encode_texts([one])[0], atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    with pytest.raises(ValueError):
        clip_random.encode_long_texts([text], max_sentences=0)


@pytest.mark.slow
def test_local_checkpoint_roundtrip(clip_random, image_files, tmp_path):
    import torch

    ckpt = tmp_path / "clip_small.pt"
    torch.save(clip_random.model.state_dict(), ckpt)
    loaded = ClipEncoder(CLIP_ARCH, pretrained=str(ckpt))
    assert loaded.identity.weights == file_sha256(ckpt)  # hashed before loading...
    assert loaded.identity.is_real
    assert loaded.identity.name == f"open_clip:{CLIP_ARCH}/clip_small.pt"
    paths = [image_files[n] for n in GOOD_IMAGES]
    np.testing.assert_allclose(loaded.encode_images(paths)[0], clip_random.encode_images(paths)[0], atol=1e-6)
    np.testing.assert_allclose(loaded.encode_texts(["a cat"]), clip_random.encode_texts(["a cat"]), atol=1e-6)
    assert loaded.identity.weights == file_sha256(ckpt)  # ...and after


@pytest.mark.slow
def test_bad_pretrained_value_fails_clearly():
    enc = ClipEncoder(CLIP_ARCH, pretrained="/no/such/checkpoint.pt")
    with pytest.raises(ValueError, match="neither an existing file nor an open_clip tag"):
        enc.encode_texts(["x"])
