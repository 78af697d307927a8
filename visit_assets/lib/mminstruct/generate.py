"""Stage 1, instruction generation: one new instruction per image from its description and 3
in-context seed instructions (MM-Instruct section 2.1), plus parsing and exact dedupe.

The 3 seeds of an image are drawn without replacement from the seeds sorted by id, with an rng
seeded by content_hash(stage, image_id, base seed); the same seed is the LLM's sampling seed. So an
image's request depends only on (image, description, seeds file, base seed, prompt version), never
on batch order or the other images in the run.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from difflib import SequenceMatcher
from typing import Any

from visit_assets.lib.ids import content_hash
from visit_assets.lib.llm.types import EMPTY as LLM_EMPTY
from visit_assets.lib.llm.types import ERROR as LLM_ERROR
from visit_assets.lib.llm.types import TRUNCATED as LLM_TRUNCATED
from visit_assets.lib.llm.types import LLMRequest, LLMResult, SamplingParams
from visit_assets.lib.mminstruct.filters import mentions_source
from visit_assets.lib.mminstruct.prompts import INSTRUCTION_GENERATION, PromptTemplate, load_prompt
from visit_assets.lib.mminstruct.rng import derive_seed, item_rng
from visit_assets.lib.mminstruct.seeds import Seed

STAGE = "instruction_generation"
N_SEED_EXAMPLES = 3  # paper: 3 in-context examples for instruction generation
# Some randomness for diversity; reproducible through the per-image seed.
DEFAULT_PARAMS = SamplingParams(temperature=0.7, top_p=0.95, max_tokens=96)

# parse statuses (anything but OK means "no instruction from this row")
OK = "ok"
EMPTY = "empty"
TRUNCATED = "truncated"
TOO_SHORT = "too_short"
TOO_LONG = "too_long"
GENERIC = "generic"  # just "describe the image": the question-answering the paper wants to go beyond
COPIED = "copied_example"  # repeats (or nearly repeats) one of its in-context examples
NOT_INSTRUCTION = "not_an_instruction"  # the model talking ("I'm here to help...", "To make the instruction...")
MENTIONS_SOURCE = "mentions_source_text"  # refers to "the description"/"the caption": users only see the image
LLM_FAILED = "llm_failed"  # the LLM call itself failed (error / empty), see the llm status
PARSE_STATUSES = (OK, EMPTY, TRUNCATED, TOO_SHORT, TOO_LONG, GENERIC, COPIED, NOT_INSTRUCTION, MENTIONS_SOURCE, LLM_FAILED)

MIN_WORDS = 4
MIN_CHARS = 15
MAX_WORDS = 80
MAX_CHARS = 500
NEAR_COPY_RATIO = 0.9  # difflib ratio of normalised texts at or above which an output copies an example


@dataclass(frozen=True)
class InstructionJob:
    """One image's generation request with what is needed for lineage."""

    image_id: str
    seed_ids: tuple[str, ...]  # the in-context seeds, in prompt order
    rng_seed: int  # the per-image seed (also the LLM sampling seed)
    request: LLMRequest
    prompt: PromptTemplate

    def lineage(self) -> dict[str, Any]:
        return {"image_id": self.image_id, "seed_ids": list(self.seed_ids), "rng_seed": self.rng_seed,
                **self.prompt.lineage()}


def _pairs(descriptions: Mapping[str, str] | Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    items = list(descriptions.items()) if isinstance(descriptions, Mapping) else [tuple(p) for p in descriptions]
    seen: set[str] = set()
    for image_id, _ in items:
        if image_id in seen:
            raise ValueError(f"image id {image_id!r} given twice")
        seen.add(image_id)
    return items  # type: ignore[return-value]


def sample_seeds(image_id: str, seeds: Sequence[Seed], base_seed: int, n: int = N_SEED_EXAMPLES) -> tuple[list[Seed], int]:
    """The n distinct seeds shown for this image and the per-image seed that chose them."""
    pool = sorted(seeds, key=lambda s: s.id)  # file order must not matter
    if len(pool) < n:
        raise ValueError(f"need at least {n} seed instructions, got {len(pool)}")
    rng_seed = derive_seed(STAGE, image_id, base_seed)
    picks = item_rng(STAGE, image_id, base_seed).choice(len(pool), size=n, replace=False)
    return [pool[int(i)] for i in picks], rng_seed


def instruction_requests(
    descriptions: Mapping[str, str] | Iterable[tuple[str, str]],
    seeds: Sequence[Seed],
    seed: int,
    *,
    n_examples: int = N_SEED_EXAMPLES,
    params: SamplingParams = DEFAULT_PARAMS,
    prompt: PromptTemplate | None = None,
) -> list[InstructionJob]:
    """One InstructionJob per (image_id, description), in input order; request.tag is the image id."""
    prompt = prompt or load_prompt(INSTRUCTION_GENERATION)
    jobs = []
    for image_id, description in _pairs(descriptions):
        chosen, rng_seed = sample_seeds(image_id, seeds, seed, n_examples)
        request = prompt.request(
            params=replace(params, seed=rng_seed),
            tag=image_id,
            description=description,
            examples=[{"text": s.text} for s in chosen],
        )
        jobs.append(InstructionJob(image_id, tuple(s.id for s in chosen), rng_seed, request, prompt))
    return jobs


# -- parsing --------------------------------------------------------------------------------------

_QUOTES = "\"'`“”‘’«»"
_FENCE = re.compile(r"^\s*```")
_LIST_MARK = re.compile(r"^(?:\(?\d{1,2}[.):]|[-*•]|#{1,6})\s+")
_LABEL = re.compile(
    r"^(?:(?:a|an|my|one|the)\s+)?(?:new|generated|final|merged|general|consolidated|single)?\s*"
    r"(?:instruction|task|prompt)(?:\s*#?\d+)?\s*[:\-–—]\s*",
    re.I,
)
# a lead-in that ends with a colon: "Sure! Here is a new instruction:", "Here's one:"
_PREAMBLE = re.compile(r"^(?:sure|okay|ok|certainly|of course|absolutely|here|below|great)\b[^:]{0,100}:\s*", re.I)
_GENERIC = re.compile(
    r"^(?:please\s+|can you\s+|could you\s+)?"
    r"(?:describe|explain|summari[sz]e|caption|tell me about|tell me what is in"
    r"|what(?:'s| is)(?: in| happening in| shown in)?|what do you see in|what can you see in|what does)\s+"
    r"(?:what you see in\s+|what is in\s+)?(?:the|this)\s+(?:image|picture|photo|photograph|scene)"
    r"(?:\s+(?:in(?: as much| great| full)? detail|show|depict|about|of))?$"
)


# an instruction addresses the assistant; these openings are the model talking about the task instead
_CHATTER = re.compile(
    r"^(?:i|i'm|i am|i'll|i will|i've|i'd|we|we're|we'll|my|our|here's|here is|here are|this is|that's|sure|okay|ok"
    r"|certainly|of course|to make|to create|to write|as an ai|as a language model)\b"
)


def normalise_instruction(text: str) -> str:
    """Dedupe key: NFKC, lower case, straight quotes, one space, no wrapping quotes or end punctuation."""
    t = unicodedata.normalize("NFKC", text or "")
    t = t.replace("“", '"').replace("”", '"').replace("‘", "'").replace("’", "'")
    t = " ".join(t.lower().split())
    t = t.strip(_QUOTES + " ")
    return t.rstrip(".!?;:, ").strip()


def instruction_id(text: str) -> str:
    """Content id of an instruction (of its normalised text)."""
    return content_hash("mminstruct.instruction", normalise_instruction(text))


def _strip_wrappers(line: str) -> str:
    prev = None
    while line != prev:
        prev = line
        line = line.strip()
        line = _LIST_MARK.sub("", line)
        for mark in ("**", "__", "*"):
            if line.startswith(mark) and line.endswith(mark) and len(line) > 2 * len(mark):
                line = line[len(mark):-len(mark)]
        if line.startswith("**"):  # "**Instruction:** Write ..."
            line = line[2:].replace("**", "", 1)
        line = _LABEL.sub("", line)
        if len(line) >= 2 and line[0] in _QUOTES and line[-1] in _QUOTES:
            line = line[1:-1]
        elif line.count('"') == 1 and line[0] == '"':  # opening quote whose closing quote was cut off
            line = line[1:]
    return line.strip()


def _first_instruction(text: str) -> tuple[str, bool]:
    """(first instruction line after removing lead-ins and labels, whether it is the text's last line)."""
    lines = [ln for ln in text.strip().splitlines() if not _FENCE.match(ln)]
    for i, raw in enumerate(lines):
        line = raw.strip()
        if not line:
            continue
        m = _PREAMBLE.match(line)
        if m:
            line = line[m.end():]
        line = _strip_wrappers(line)
        rest = any(ln.strip() for ln in lines[i + 1:])
        if not line or (line.endswith(":") and rest):  # a lead-in line of its own
            continue
        return " ".join(line.split()), not rest
    return "", True


def parse_instruction(text: str | None, *, finish_reason: str | None = None,
                      examples: Sequence[str] = ()) -> tuple[str | None, str]:
    """(instruction, OK) or (None, reason). Takes the first instruction of the reply.

    Strips lead-ins ("Sure, here is..."), labels ("Instruction:", "New instruction 4:"),
    numbering/bullets, markdown emphasis and wrapping quotes. Rejects empty, too short
    (< MIN_WORDS words or < MIN_CHARS chars), too long (> MAX_WORDS words or > MAX_CHARS chars),
    bare "describe the image" requests, the model talking instead of instructing ("I'm here to
    help...", "Here is..."), instructions that refer to the description or caption, and copies of
    an in-context example (difflib ratio of the normalised texts >= NEAR_COPY_RATIO). With
    finish_reason "length" the first line counts only if more text followed it (else it may be cut).
    """
    if not text or not text.strip():
        return None, EMPTY
    line, is_last = _first_instruction(text)
    if not line:
        return None, EMPTY
    if finish_reason == "length" and is_last:
        return None, TRUNCATED
    words = line.split()
    if len(words) < MIN_WORDS or len(line) < MIN_CHARS:
        return None, TOO_SHORT
    if len(words) > MAX_WORDS or len(line) > MAX_CHARS:
        return None, TOO_LONG
    norm = normalise_instruction(line)
    if _GENERIC.match(norm):
        return None, GENERIC
    if _CHATTER.match(norm):
        return None, NOT_INSTRUCTION
    if mentions_source(line):
        return None, MENTIONS_SOURCE
    if any(SequenceMatcher(None, norm, normalise_instruction(e)).ratio() >= NEAR_COPY_RATIO for e in examples):
        return None, COPIED
    return line, OK


def parse_result(result: LLMResult, examples: Sequence[str] = ()) -> tuple[str | None, str]:
    """parse_instruction on an LLMResult: failed calls give LLM_FAILED, truncation is checked per line."""
    if result.status in (LLM_ERROR, LLM_EMPTY):
        return None, LLM_FAILED if result.status == LLM_ERROR else EMPTY
    finish = "length" if result.status == LLM_TRUNCATED else result.finish_reason
    return parse_instruction(result.text, finish_reason=finish, examples=examples)


def instruction_row(job: InstructionJob, result: LLMResult, seeds: Mapping[str, Seed]) -> dict[str, Any]:
    """One output row of the generation stage: lineage, the parsed instruction and its status."""
    examples = [seeds[s].text for s in job.seed_ids if s in seeds]
    instruction, status = parse_result(result, examples)
    return {
        **job.lineage(),
        "instruction": instruction,
        "instruction_id": instruction_id(instruction) if instruction else None,
        "status": status,
        **result.row_fields(),
    }


# -- exact dedupe ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class DedupGroup:
    instruction_id: str  # content hash of the normalised text
    text: str  # the representative text (lexicographically first member: independent of input order)
    members: tuple[int, ...]  # input positions with this normalised text, ascending


def dedupe_exact(texts: Sequence[str]) -> list[DedupGroup]:
    """Group instructions whose normalised text is identical; groups ordered by instruction id."""
    groups: dict[str, list[int]] = {}
    for i, t in enumerate(texts):
        groups.setdefault(instruction_id(t), []).append(i)
    out = [DedupGroup(key, min(" ".join(texts[i].split()) for i in idx), tuple(idx)) for key, idx in groups.items()]
    return sorted(out, key=lambda g: g.instruction_id)
