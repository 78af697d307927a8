"""Pairing two conversation sets for the pairwise judge, and its requests in both orders.

Each candidate conversation is paired with one baseline conversation of the same image: the one
with the same instruction when there is one (the paper's setting: two answers to one question),
otherwise one drawn at random, deterministically, by a content hash of seed and ids.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from ..ids import content_hash
from .pairwise import EXAMPLE_PROMPT_ID, PAIRWISE_PROMPT_ID, example_pair_messages, pairwise_messages


@dataclass(frozen=True)
class Pair:
    candidate: dict[str, Any]  # rows with conversation_id, image_id, instruction, answer
    baseline: dict[str, Any]

    @property
    def same_instruction(self) -> bool:
        return _norm(self.candidate["instruction"]) == _norm(self.baseline["instruction"])

    @property
    def prompt_id(self) -> str:
        return PAIRWISE_PROMPT_ID if self.same_instruction else EXAMPLE_PROMPT_ID

    def messages(self, candidate_first: bool, image_context: str | None) -> list[dict[str, str]]:
        a, b = (self.candidate, self.baseline) if candidate_first else (self.baseline, self.candidate)
        if self.same_instruction:
            return pairwise_messages(a["instruction"], a["answer"], b["answer"], image_context=image_context)
        return example_pair_messages(a["instruction"], a["answer"], b["instruction"], b["answer"],
                                     image_context=image_context)


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def pair_up(candidates: list[dict[str, Any]], pool: list[dict[str, Any]], seed: int = 0
            ) -> tuple[list[Pair], list[dict[str, Any]]]:
    """(pairs, unpaired candidates). A baseline row is used at most once; the pool never contains
    a candidate (callers pass disjoint sets)."""
    by_image: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in pool:
        by_image[row["image_id"]].append(row)
    used: set[str] = set()
    pairs, unpaired = [], []
    for cand in sorted(candidates, key=lambda r: r["conversation_id"]):
        options = [r for r in by_image.get(cand["image_id"], []) if r["conversation_id"] not in used]
        if not options:
            unpaired.append(cand)
            continue
        same = [r for r in options if _norm(r["instruction"]) == _norm(cand["instruction"])]
        pick = min(same or options, key=lambda r: content_hash(seed, cand["conversation_id"], r["conversation_id"]))
        used.add(pick["conversation_id"])
        pairs.append(Pair(cand, pick))
    return pairs, unpaired
