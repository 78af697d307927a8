"""The stand-in as a vision-language model: it takes OpenAI content-part messages, recognises the
description prompt, and describes the image it is sent from its pixels (over real HTTP, through
the openai backend)."""

from __future__ import annotations

import base64
import hashlib
import io
import re

import httpx
import pytest
from PIL import Image, ImageDraw

from visit_assets.lib.llm import ERROR, OK, ImageInput, LLMClient, LLMRequest, SamplingParams
from visit_assets.lib.llm.openai_backend import OpenAIBackend
from visit_assets.lib.mminstruct.prompts import FIT_CHECK, IMAGE_DESCRIPTION, load_prompt
from visit_assets.lib.standin import STAND_IN_MODEL
from visit_assets.lib.standin.faults import FaultPlan
from visit_assets.lib.standin.recognise import recognise, text_of
from visit_assets.lib.standin.replies import reply
from visit_assets.lib.standin.server import IMAGE_TOKENS, StandInServer
from visit_assets.lib.standin.vision import look

DESCRIBE = load_prompt(IMAGE_DESCRIPTION)


def encode(img: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def red_landscape() -> bytes:
    """Mostly red, wider than tall, with a white disc at the top right."""
    img = Image.new("RGB", (320, 200), (205, 35, 30))
    ImageDraw.Draw(img).ellipse((230, 20, 290, 80), fill=(250, 250, 250))
    return encode(img)


def dark_blue_portrait() -> bytes:
    """Dark blue, taller than wide, a photo-like gradient: darker towards the bottom."""
    img = Image.new("RGB", (180, 300))
    px = img.load()
    for y in range(300):
        for x in range(180):
            px[x, y] = (8 + (x * 7 + y * 3) % 9, 14 + (x * 5) % 7, 110 - y // 4)
    return encode(img, "JPEG")


@pytest.fixture(scope="module")
def server():
    with StandInServer(FaultPlan({})) as s:
        yield s


def describe(backend: OpenAIBackend, *images: bytes, max_tokens: int = 300):
    req = DESCRIBE.request(images=[ImageInput.from_bytes(b) for b in images], params=SamplingParams(max_tokens=max_tokens))
    return LLMClient(backend).generate([req])[0]


def test_it_describes_two_different_images_differently_and_correctly_over_http(server):
    bodies = []
    handle = server.handle
    server.handle = lambda body: (bodies.append(body), handle(body))[1]  # what went over the wire
    try:
        backend = OpenAIBackend([server.base_url], STAND_IN_MODEL, max_retries=0)
        red, blue = red_landscape(), dark_blue_portrait()
        first, second = describe(backend, red), describe(backend, blue)
    finally:
        server.handle = handle
    assert first.status == second.status == OK and first.text != second.text
    a, b = (set(re.findall(r"[a-z]+", r.text.lower())) for r in (first, second))
    assert {"landscape", "red"} <= a and not {"portrait", "blue", "dark"} & a
    assert "white circle at the top right" in first.text
    assert {"portrait", "blue", "dark"} <= b and not {"landscape", "red"} & b
    assert len([s for s in first.text.split(". ") if s]) >= 4  # a detailed description, several sentences
    # the wire format: the image first as a base64 data URI, then the paper's instruction
    user = bodies[0]["messages"][-1]
    assert user["role"] == "user" and [p["type"] for p in user["content"]] == ["image_url", "text"]
    url = user["content"][0]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,") and base64.b64decode(url.split(",", 1)[1]) == red
    assert user["content"][1] == {"type": "text", "text": "Describe the image in detail."}
    assert bodies[1]["messages"][-1]["content"][0]["image_url"]["url"].startswith("data:image/jpeg;base64,")
    # the stand-in saw exactly those bytes, and counts image tokens as a VLM server does
    seen = [e for e in server.log if e.get("role") == "describe" and e["status"] == 200][-2:]
    assert [e["images"][0]["digest"] for e in seen] == [hashlib.sha256(x).hexdigest()[:16] for x in (red, blue)]
    assert first.prompt_tokens == IMAGE_TOKENS + len(DESCRIBE.system.split()) + 5


def test_the_description_is_deterministic_and_from_the_pixels():
    red = red_landscape()
    assert look(red).description == look(red).description
    assert look(red).colours[0] == "red" and look(dark_blue_portrait()).colours[0] == "dark blue"
    grey = look(encode(Image.new("L", (100, 100), 128)))
    assert "square" in grey.description and "black, white and grey" in grey.description
    split = Image.new("RGB", (300, 300), (40, 110, 210))
    ImageDraw.Draw(split).rectangle((0, 150, 299, 299), fill=(40, 150, 50))
    text = look(encode(split)).description
    assert "upper part is mostly blue" in text and "lower part is mostly green" in text


def test_a_description_request_without_an_image_gets_a_refusal_as_from_a_real_vlm(server):
    """A real VLM server answers a text-only request (HTTP 200); the model says it sees no image."""
    backend = OpenAIBackend([server.base_url], STAND_IN_MODEL, max_retries=0)
    res = LLMClient(backend).generate([DESCRIBE.request()])[0]
    assert res.status == OK and "can't see an image" in res.text and "sorry" in res.text.lower()
    assert server.log[-1]["truth"] == {"image": False}


def test_an_image_it_cannot_load_is_a_400_as_from_a_real_server(server):
    backend = OpenAIBackend([server.base_url], STAND_IN_MODEL, max_retries=0)
    res = describe(backend, b"\x89PNG\r\n\x1a\n but not really")
    assert res.status == ERROR and "HTTP 400" in res.error and "cannot decode the image" in res.error
    body = {"model": STAND_IN_MODEL, "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
        {"type": "text", "text": "Describe the image in detail."}]}]}
    body["messages"].insert(0, {"role": "system", "content": DESCRIBE.system})
    r = httpx.post(server.base_url + "/chat/completions", json=body)
    assert r.status_code == 400 and "data: URI" in r.json()["error"]["message"]


def test_content_parts_are_read_as_their_text_for_every_prompt():
    """Text sent as OpenAI content parts is the same prompt as text sent as a string."""
    fit = load_prompt(FIT_CHECK)
    messages = fit.messages({"description": "Captions:\n- A dog on a beach.", "instruction": "Write a poem."})
    as_parts = [{**m, "content": [{"type": "text", "text": m["content"]}]} for m in messages]
    assert recognise(as_parts) == recognise(messages)
    assert reply({"messages": as_parts}, FaultPlan({})).text == reply({"messages": messages}, FaultPlan({})).text
    two = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}},
                                         {"type": "text", "text": "Describe the image in detail."}]}]
    got = recognise([{"role": "system", "content": DESCRIBE.system}, *two])
    assert got.role == "describe" and got.images == ("data:image/png;base64,AA==",)
    assert recognise([{"role": "system", "content": DESCRIBE.system},
                      {"role": "user", "content": "Describe the image in detail."}]).images == ()
    assert text_of([{"type": "text", "text": "a"}, {"type": "image_url", "image_url": {"url": "x"}},
                    {"type": "text", "text": "b"}]) == "a\nb"  # text parts joined as vLLM joins them


def test_several_images_are_described_one_by_one():
    req = DESCRIBE.request(images=[ImageInput(red_landscape(), "image/png"), ImageInput(dark_blue_portrait(), "image/jpeg")])
    from visit_assets.lib.llm.openai_backend import openai_body

    r = reply(openai_body(req, STAND_IN_MODEL), FaultPlan({}))
    assert r.text.startswith("Image 1: This is a landscape") and "\n\nImage 2: This is a portrait" in r.text
    assert len(r.entry["images"]) == 2


def test_text_prompts_are_answered_as_before():
    """The description prompt changes nothing for the others (a byte-identical reply, pinned)."""
    fit = load_prompt(FIT_CHECK)
    body = {"messages": fit.messages({"description": "Captions:\n- A dog on a beach.", "instruction": "Write a poem."}),
            "seed": 3, "max_tokens": 8}
    assert reply(body, FaultPlan({})).text == "yes"
    assert LLMRequest.chat("x").openai_messages() == [{"role": "user", "content": "x"}]
