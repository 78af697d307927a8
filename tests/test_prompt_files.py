"""The prompts moved from code constants to YAML files render byte-identical messages.

The `OLD_*` strings below are verbatim copies of the constants the lib modules held before the
move (visit_assets/lib/instructify/sampling.py, facts.py, visit_assets/lib/selection/scores.py,
pairwise.py). LLM cache keys hash the rendered messages, so any difference would invalidate the
cache and make existing rows irreproducible: keep these copies frozen. When a prompt text is
changed on purpose, bump its `version` in the YAML, record the new fingerprint in FINGERPRINTS,
and drop the equality case for that prompt.
"""

from __future__ import annotations

import pytest

from visit_assets.lib import prompts as shared
from visit_assets.lib.instructify import facts as facts_mod
from visit_assets.lib.instructify import sampling as sampling_mod
from visit_assets.lib.instructify.facts import Fact, make_fact, qa_to_declarative_requests
from visit_assets.lib.instructify.parse import QAPair
from visit_assets.lib.instructify.registry import format_facts
from visit_assets.lib.llm.types import LLMRequest, SamplingParams
from visit_assets.lib.mminstruct import prompts as mm_prompts
from visit_assets.lib.selection import pairwise as pairwise_mod
from visit_assets.lib.selection import scores as scores_mod

# ---- frozen copies of the old code constants ------------------------------------------------

OLD_VERIFY_PROMPT_VERSION = 1
OLD_VERIFY_SYSTEM = (
    "You check answers about an image against a numbered list of known facts about that image. Be strict: "
    "an answer is True only if the facts state or directly imply everything it says; otherwise it is False."
)
OLD_VERIFY_TEMPLATE = (
    "Facts about the image:\n{facts}\n\n"
    "Question: {question}\nAnswer: {answer}\n\n"
    "Is this answer correct and fully supported by the facts? On the first line write only True or False. "
    'On the second line write "Facts:" followed by the numbers of the facts that support the answer.'
)

OLD_DECLARATIVE_PROMPT_VERSION = 1
OLD_DECLARATIVE_SYSTEM = (
    "You rewrite a question about an image and its answer as one short declarative statement of fact. "
    "Use only what the question and the answer say. Reply with the statement only."
)
OLD_DECLARATIVE_TEMPLATE = "Question: {question}\nAnswer: {answer}\nStatement:"

OLD_JUDGE_PROMPT_ID = "igpt4-judge-score"
OLD_JUDGE_PROMPT_VERSION = "1"
OLD_JUDGE_SYSTEM = (
    "You grade training examples for a vision-language assistant. Each example is an instruction "
    "about an image and the answer written for it. You do not see the image; judge only the text."
)
OLD_JUDGE_USER = (
    "Rate how good this answer is as a response to the instruction, on an integer scale from 0 "
    "(useless, wrong or off-topic) to 100 (excellent). Consider whether it follows the "
    "instruction, whether it is informative and specific rather than vague or repetitive, and "
    "whether it is fluent and grammatical.\n\n"
    "Instruction:\n{instruction}\n\n"
    "Answer:\n{answer}\n\n"
    "Reply with the score alone on the first line, for example `Score: 73`. "
    "You may explain your rating briefly on the following lines."
)

OLD_PAIRWISE_PROMPT_ID = "pairwise-judge"
OLD_PAIRWISE_PROMPT_VERSION = "1"
OLD_PAIRWISE_SYSTEM = (
    "You compare two answers written by AI assistants to the same instruction about an image. "
    "Be impartial: the order in which the answers are shown and their length must not influence "
    "you."
)
OLD_PAIRWISE_USER = (
    "{context}Instruction:\n{instruction}\n\n"
    "Answer A:\n{answer_a}\n\n"
    "Answer B:\n{answer_b}\n\n"
    "Which answer responds better to the instruction? Consider correctness, helpfulness, level "
    "of detail and clarity. Give a short justification, then end with a last line that is exactly "
    "one of `Verdict: A`, `Verdict: B` or `Verdict: tie`."
)

OLD_EXAMPLE_PROMPT_ID = "pairwise-example-judge"
OLD_EXAMPLE_PROMPT_VERSION = "1"
OLD_EXAMPLE_SYSTEM = (
    "You compare two training examples for a vision-language assistant about the same image. Each "
    "example is an instruction and its answer. Be impartial: the order of the examples and their "
    "length must not influence you."
)
OLD_EXAMPLE_USER = (
    "{context}Example A\nInstruction:\n{instruction_a}\nAnswer:\n{answer_a}\n\n"
    "Example B\nInstruction:\n{instruction_b}\nAnswer:\n{answer_b}\n\n"
    "Which example would teach the assistant more: a clear, useful instruction about the image, "
    "answered correctly, helpfully and in detail? Give a short justification, then end with a last "
    "line that is exactly one of `Verdict: A`, `Verdict: B` or `Verdict: tie`."
)


# ---- the old renderings (the functions as they were) -----------------------------------------

def old_verify_request(facts, pair, params, tag):
    user = OLD_VERIFY_TEMPLATE.format(facts=format_facts(facts), question=pair.question, answer=pair.answer)
    return LLMRequest.chat(user, system=OLD_VERIFY_SYSTEM, params=params, tag=tag)


def old_judge_messages(instruction, answer):
    return [
        {"role": "system", "content": OLD_JUDGE_SYSTEM},
        {"role": "user", "content": OLD_JUDGE_USER.format(instruction=instruction.strip(), answer=answer.strip())},
    ]


def old_pairwise_messages(instruction, answer_a, answer_b, *, image_context=None):
    context = f"Description of the image:\n{image_context.strip()}\n\n" if image_context else ""
    return [
        {"role": "system", "content": OLD_PAIRWISE_SYSTEM},
        {"role": "user", "content": OLD_PAIRWISE_USER.format(
            context=context, instruction=instruction.strip(), answer_a=answer_a.strip(), answer_b=answer_b.strip())},
    ]


def old_example_messages(instruction_a, answer_a, instruction_b, answer_b, *, image_context=None):
    context = f"Description of the image:\n{image_context.strip()}\n\n" if image_context else ""
    return [
        {"role": "system", "content": OLD_EXAMPLE_SYSTEM},
        {"role": "user", "content": OLD_EXAMPLE_USER.format(
            context=context, instruction_a=instruction_a.strip(), answer_a=answer_a.strip(),
            instruction_b=instruction_b.strip(), answer_b=answer_b.strip())},
    ]


# Inputs with the awkward parts: braces, surrounding whitespace, blank lines, unicode, multi-line.
TEXTS = [
    "What is on the table?",
    "  Describe the {weird} scene.\n\n",
    "Line one.\nLine two with trailing space \n",
    "Ünïcödé — “quotes” and `ticks` and \\backslash",
]
CONTEXTS = [None, "", "A dog on a beach.", "  Multi\nline {context}  \n"]


def _fact_list():
    return [
        make_fact("img", "caption", "A dog runs on the beach."),
        make_fact("img", "object", "Objects: 1 dog, 2 people."),
        Fact("f3", "img", "ocr", 'Visible text: "{STOP}".  \n'),
        Fact("f4", "img", "qa", "Multi-line\nfact with trailing newline\n"),
    ]


@pytest.mark.parametrize("question", TEXTS)
@pytest.mark.parametrize("answer", TEXTS[::-1])
def test_verify_renders_as_before(question, answer):
    facts = _fact_list()
    pair = QAPair(question, answer)
    params = SamplingParams(temperature=0.0, max_tokens=8)
    cfg = sampling_mod.SamplingConfig(verification=params)
    state = sampling_mod._Image(record={}, image_id="img", image_key="k", facts=facts, remaining=list(facts), rng=None)
    new = sampling_mod._verify_request(state, pair, cfg, tag=("img", 0))
    old = old_verify_request(facts, pair, params, ("img", 0))
    assert new.messages == old.messages
    assert new == old
    assert new.messages[0]["content"] == sampling_mod.VERIFY_SYSTEM == OLD_VERIFY_SYSTEM
    assert sampling_mod.VERIFY_PROMPT_VERSION == OLD_VERIFY_PROMPT_VERSION
    assert type(sampling_mod.VERIFY_PROMPT_VERSION) is int


def test_declarative_renders_as_before():
    qa = [{"question": q, "answer": a} for q in TEXTS for a in TEXTS[::-1]]
    record = {"image_id": "img", "qa": qa}
    for params in (None, SamplingParams(temperature=0.3, max_tokens=10)):
        new = qa_to_declarative_requests(record, params)
        assert len(new) == len(qa)
        for req, item in zip(new, qa, strict=True):
            old = LLMRequest.chat(
                OLD_DECLARATIVE_TEMPLATE.format(question=item["question"].strip(), answer=item["answer"].strip()),
                system=OLD_DECLARATIVE_SYSTEM,
                params=params or SamplingParams(temperature=0.0, max_tokens=64),
                tag=req.tag,
            )
            assert req == old
    assert facts_mod.DECLARATIVE_SYSTEM == OLD_DECLARATIVE_SYSTEM
    assert facts_mod.DECLARATIVE_PROMPT_VERSION == OLD_DECLARATIVE_PROMPT_VERSION
    assert type(facts_mod.DECLARATIVE_PROMPT_VERSION) is int


@pytest.mark.parametrize("instruction", TEXTS)
@pytest.mark.parametrize("answer", TEXTS[::-1])
def test_judge_renders_as_before(instruction, answer):
    assert scores_mod.judge_request_messages(instruction, answer) == old_judge_messages(instruction, answer)
    assert (scores_mod.JUDGE_PROMPT_ID, scores_mod.JUDGE_PROMPT_VERSION) == (OLD_JUDGE_PROMPT_ID, OLD_JUDGE_PROMPT_VERSION)


@pytest.mark.parametrize("context", CONTEXTS)
@pytest.mark.parametrize("text", TEXTS)
def test_pairwise_renders_as_before(context, text):
    args = (text, TEXTS[0], TEXTS[2])
    assert (pairwise_mod.pairwise_messages(*args, image_context=context)
            == old_pairwise_messages(*args, image_context=context))
    args = (text, TEXTS[1], TEXTS[3], TEXTS[2])
    assert (pairwise_mod.example_pair_messages(*args, image_context=context)
            == old_example_messages(*args, image_context=context))
    assert ((pairwise_mod.PAIRWISE_PROMPT_ID, pairwise_mod.PAIRWISE_PROMPT_VERSION)
            == (OLD_PAIRWISE_PROMPT_ID, OLD_PAIRWISE_PROMPT_VERSION))
    assert ((pairwise_mod.EXAMPLE_PROMPT_ID, pairwise_mod.EXAMPLE_PROMPT_VERSION)
            == (OLD_EXAMPLE_PROMPT_ID, OLD_EXAMPLE_PROMPT_VERSION))


def test_pairwise_without_context_keyword():
    assert pairwise_mod.pairwise_messages("q", "a", "b") == old_pairwise_messages("q", "a", "b")
    assert pairwise_mod.example_pair_messages("q", "a", "r", "b") == old_example_messages("q", "a", "r", "b")


# ---- the files themselves ---------------------------------------------------------------------

# (family, name) -> (id, version, fingerprint). Editing a prompt text changes its fingerprint:
# bump `version` in the YAML and record the new triple here (and in the rows' meaning).
FINGERPRINTS = {
    ("instructify_checks", "verify"): ("instructify.verify", 1, "cf7bba9504a92098"),
    ("instructify_checks", "declarative"): ("instructify.declarative", 1, "4193e7f1bcf87c46"),
    ("selection", "judge_score"): ("igpt4-judge-score", 1, "a9aaee89baca91d2"),
    ("selection", "pairwise"): ("pairwise-judge", 1, "096f226247529750"),
    ("selection", "pairwise_example"): ("pairwise-example-judge", 1, "92a6b81e8b5a1d76"),
}


@pytest.mark.parametrize("family,name", sorted(FINGERPRINTS))
def test_prompt_files_pinned(family, name):
    p = shared.load_prompt(name, shared.prompt_dir(family))
    pid, version, fingerprint = FINGERPRINTS[(family, name)]
    assert (p.id, p.version) == (pid, version)
    assert p.fingerprint == fingerprint, f"{family}/{name}.yaml text changed: bump its version"
    assert p.lineage() == {"prompt_id": pid, "prompt_version": version, "prompt_fingerprint": fingerprint}


def test_every_prompt_file_loads():
    """Every YAML file under prompts/ (except the Instructify registry's own folder) parses."""
    for d in sorted(p for p in shared.PROMPTS_ROOT.iterdir() if p.is_dir() and p.name != "instructify"):
        loaded = shared.load_prompts(d)
        assert loaded, d


def test_mminstruct_reexport_is_the_shared_loader():
    assert mm_prompts.PromptTemplate is shared.PromptTemplate
    assert mm_prompts.PromptError is shared.PromptError
    assert mm_prompts.load_prompt(mm_prompts.FIT_CHECK).id == "mminstruct.fit_check"


def test_render_values_can_keep_whitespace():
    p = shared.parse_prompt({"id": "t", "version": 1, "system": "s", "template": "<{x}>", "variables": ["x"]}, "t")
    assert p.render(x="  a \n") == "<a>"
    assert p.render_values({"x": "  a \n"}, strip=False) == "<  a \n>"
    with pytest.raises(shared.PromptError, match="missing"):
        p.render_values({}, strip=False)
    assert p.messages({"x": " a "}) == [{"role": "system", "content": "s"}, {"role": "user", "content": "<a>"}]
