"""The (instruction, answer) texts of a conversation, as the scores read them.

InstructionGPT-4 scores single-turn pairs. A multi-turn conversation (Instructify's) is read as
one pair: its human turns joined as the instruction, its assistant turns joined as the answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

IMAGE_TOKEN = "<image>"


def instruction_and_answer(turns: Sequence[dict[str, Any]] | None) -> tuple[str, str]:
    turns = turns or []
    human = [str(t["value"]).replace(IMAGE_TOKEN, "").strip() for t in turns if t["from"] == "human"]
    gpt = [str(t["value"]).strip() for t in turns if t["from"] == "gpt"]
    return "\n".join(h for h in human if h), "\n".join(g for g in gpt if g)
