"""Requests with images (for a vision-language model): validation, the cache key (content hashes
only, text-only keys unchanged), the OpenAI content-part format, and the backends that refuse them."""

from __future__ import annotations

import base64
import hashlib
import io
import json

import pytest

from visit_assets.lib.ids import stable_json
from visit_assets.lib.llm import ImageInput, ImagesNotSupportedError, LLMRequest, SamplingParams
from visit_assets.lib.llm.echo_backend import EchoBackend
from visit_assets.lib.llm.llama_cpp_backend import LlamaCppBackend
from visit_assets.lib.llm.openai_backend import openai_body
from visit_assets.lib.llm.types import refuse_images, sniff_media_type
from visit_assets.lib.llm.vllm_backend import VLLMBackend
from visit_assets.lib.mminstruct.prompts import IMAGE_DESCRIPTION, load_prompt
from visit_assets.lib.models.identity import ModelIdentity

MODEL = ModelIdentity("m.gguf", "a" * 64, "llm")


def png(colour=(200, 30, 30), size=(8, 6)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    return buf.getvalue()


RED, BLUE = png(), png((10, 20, 90))


def text_only() -> list[LLMRequest]:
    return [
        LLMRequest(messages=({"role": "system", "content": "sys"}, {"role": "user", "content": "hi"}),
                   params=SamplingParams()),
        LLMRequest.chat("Describe the image in detail.", system="You are helpful.",
                        params=SamplingParams(temperature=0.7, max_tokens=64, seed=None, stop=("\n",)),
                        json_schema={"type": "object"}),
        LLMRequest.chat("x", regex="[a-z]+"),
    ]


def test_a_text_only_key_is_what_it_was_before_images_existed():
    """Computed before `images` was added: existing caches and data versions depend on these."""
    assert [r.cache_key(MODEL) for r in text_only()] == [
        "530f3a2e15732c4ddcffcd081b145fe1", "ab1e8239d4c516e4e352c820572e1063", "8ee0f5fcaf6890d97a5bf0ef65ccecd9"]
    other = ModelIdentity(name="m", weights="w", kind="llm")
    assert LLMRequest.chat("Describe the image in detail.", system="You are helpful.").cache_key(other) == \
        "c4dd6a87b435023720fa29869c29d6d2"
    assert all(r.images == () and r.key_payload(MODEL)[-1] == r.regex for r in text_only())


def test_the_key_holds_each_images_content_hash_never_its_bytes_or_name():
    def req(*images: ImageInput) -> LLMRequest:
        return LLMRequest.chat("Describe the image in detail.", images=images)

    plain = req().cache_key(MODEL)
    red, red_again, blue = ImageInput(RED, "image/png", "a.png"), ImageInput(RED, "image/png", "/data/b.png"), \
        ImageInput(BLUE, "image/png")
    assert red.sha256 == hashlib.sha256(RED).hexdigest()
    keys = {req(red).cache_key(MODEL), req(blue).cache_key(MODEL), req(red, blue).cache_key(MODEL),
            req(blue, red).cache_key(MODEL), plain}
    assert len(keys) == 5  # an image, another image, their order, no image: all different
    assert req(red).cache_key(MODEL) == req(red_again).cache_key(MODEL)  # the name (a path) is not part of it
    assert req(red) == req(red_again)
    payload = stable_json(req(red).key_payload(MODEL))
    assert red.sha256 in payload
    assert base64.b64encode(RED).decode()[:40] not in payload and "a.png" not in payload and "data:" not in payload


def test_bad_images_are_refused_with_a_clear_error():
    with pytest.raises(ValueError, match="empty"):
        ImageInput(b"", "image/png")
    with pytest.raises(ValueError, match="unknown image media type 'image/tiff'"):
        ImageInput(RED, "image/tiff", "scan.tif")
    with pytest.raises(ValueError, match="unknown image media type"):
        ImageInput(RED, "")
    with pytest.raises(TypeError, match="must be bytes"):
        ImageInput("abc", "image/png")
    with pytest.raises(ValueError, match="not a PNG, JPEG, WebP or GIF"):
        ImageInput.from_bytes(b"%PDF-1.4 ...", name="doc.pdf")
    with pytest.raises(TypeError, match="ImageInput"):
        LLMRequest.chat("Describe the image in detail.", images=[RED])
    with pytest.raises(ValueError, match="user message"):
        LLMRequest(({"role": "system", "content": "s"},), images=(ImageInput(RED, "image/png"),))
    assert ImageInput(RED, "IMAGE/JPG").media_type == "image/jpeg"  # an alias, normalised


def test_media_type_is_read_from_the_bytes(tmp_path):
    from PIL import Image

    for fmt, media_type in (("PNG", "image/png"), ("JPEG", "image/jpeg"), ("WEBP", "image/webp"), ("GIF", "image/gif")):
        buf = io.BytesIO()
        Image.new("RGB", (4, 4), (1, 2, 3)).save(buf, format=fmt)
        assert sniff_media_type(buf.getvalue()) == media_type
    path = tmp_path / "photo.jpg"
    Image.new("RGB", (4, 4)).save(path, format="JPEG")
    img = ImageInput.from_file(path)
    assert (img.media_type, img.name, img.data) == ("image/jpeg", "photo.jpg", path.read_bytes())


def test_openai_body_sends_images_as_content_parts_and_text_only_bodies_are_unchanged():
    p = load_prompt(IMAGE_DESCRIPTION)
    red = ImageInput(RED, "image/png")
    req = p.request(images=[red], params=SamplingParams(max_tokens=200))
    body = openai_body(req, "vlm")
    assert body["messages"][0] == {"role": "system", "content": p.system}
    image_part, text_part = body["messages"][-1]["content"]
    assert text_part == {"type": "text", "text": "Describe the image in detail."}
    url = "data:image/png;base64," + base64.b64encode(RED).decode()
    assert image_part == {"type": "image_url", "image_url": {"url": url}}
    json.dumps(body)  # it is JSON as it is
    for r in text_only():
        assert openai_body(r, "m")["messages"] == r.message_list() == r.openai_messages()
    # several images, and a last message that is not the user's: the images go with the last user message
    req = LLMRequest(({"role": "user", "content": "Compare them."}, {"role": "assistant", "content": "Sure:"}),
                     images=(red, ImageInput(BLUE, "image/png")))
    msgs = req.openai_messages()
    assert [part["type"] for part in msgs[0]["content"]] == ["image_url", "image_url", "text"]
    assert msgs[1]["content"] == "Sure:"
    assert req.message_list()[0]["content"] == "Compare them."  # the text view has no images


def test_the_description_prompt_is_the_papers():
    p = load_prompt(IMAGE_DESCRIPTION)
    assert p.id == "mminstruct.image_description" and p.variables == () and p.render() == "Describe the image in detail."


def test_llama_cpp_in_process_refuses_images_before_loading_anything(tmp_path):
    gguf = tmp_path / "not-loaded.gguf"
    gguf.write_bytes(b"GGUF")  # never read: the refusal comes first
    backend = LlamaCppBackend(gguf)
    got = []
    reqs = [LLMRequest.chat("hi"), LLMRequest.chat("Describe the image in detail.", images=[ImageInput(RED, "image/png")])]
    refused = r"the llama_cpp backend cannot send images \(1 request.*OpenAI-compatible"
    with pytest.raises(ImagesNotSupportedError, match=refused):
        backend.complete(reqs, lambda i, r: got.append(i))
    with pytest.raises(ImagesNotSupportedError, match="llama_cpp"):
        backend.complete_one(reqs[1])
    assert got == [] and backend._llm is None
    refuse_images(reqs[:1], "anything")  # text only: nothing to refuse


def test_echo_takes_images_and_tells_them_apart():
    echo = EchoBackend()
    red, blue = ImageInput(RED, "image/png"), ImageInput(BLUE, "image/png")
    texts = [echo.answer(LLMRequest.chat("Describe it.", images=[img])).text for img in (red, blue)]
    assert texts[0] == f"echo: Describe it. [image image/png {red.sha256[:12]}]" and texts[0] != texts[1]
    assert echo.answer(LLMRequest.chat("Describe it.")).text == "echo: Describe it."  # text only: as before


def test_vllm_sends_the_content_parts_to_llm_chat():
    class Engine:
        def __init__(self):
            self.calls = []

        def chat(self, conversations, sampling_params, use_tqdm):
            self.calls.append(conversations)
            return [None] * len(conversations)

    backend = VLLMBackend("some/vlm", weights="w")
    backend._llm, backend._make_params = Engine(), lambda kwargs: kwargs
    reqs = [LLMRequest.chat("Describe the image in detail.", images=[ImageInput(RED, "image/png")]), LLMRequest.chat("hi")]
    results = []
    backend.complete(reqs, lambda i, r: results.append((i, r.status)))
    [conversations] = backend._llm.calls
    assert conversations == [r.openai_messages() for r in reqs]
    assert conversations[0][-1]["content"][0]["type"] == "image_url" and conversations[1] == reqs[1].message_list()
    assert [i for i, _ in results] == [0, 1]
