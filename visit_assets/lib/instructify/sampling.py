"""The conversation sampling loop, round-based over many images.

Each round of a lane (see `sample_conversations`) makes at most two model calls, whatever the number
of images: one `generate` call with a request for every image still active, then one `verify` call
(the checker's model; default the same) with a request for every parsed QA pair of that round. Per
image and iteration:

1. sample a prompt type by weight and its slots with the image's own `random.Random` (seeded by
   a hash of image_id + base seed, so an image's conversations never depend on which other
   images share the batch), render it over the facts not yet consumed, generate;
2. parse the `Question:`/`Answer:` blocks; drop pairs beyond the sampled count, the last pair of
   a reply cut at max_tokens, and questions already asked about this image (normalised);
3. verify every remaining pair True/False against ALL the image's facts (strict parse). If the
   first pair is not verified True the conversation is rejected; otherwise the verified pairs
   form the conversation and the facts they used are consumed (see `consume_facts`);
4. an image stops when more than `stop_fraction` of its facts are consumed, fewer than
   `min_remaining_chars` characters of facts remain, more than `max_failures` iterations in a
   row were rejected, or it ran `max_iterations` iterations.

Every iteration leaves one attempt row (accepted or rejected, with the reason), and every image
one final "stopped" row naming the stop rule, so the attempts explain each image's count.
"""

from __future__ import annotations

import random
import re
import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal, get_args

from visit_assets.lib.ids import content_hash, stable_json
from visit_assets.lib.llm.types import EMPTY, ERROR, OK, TRUNCATED, LLMRequest, LLMResult, SamplingParams
from visit_assets.lib.prompts import load_prompt, prompt_dir

from .facts import Fact, facts_for, features
from .parse import PARTIAL, QAPair, parse_fact_refs, parse_qa, parse_verdict
from .registry import PromptType, Registry, format_facts, render, sample_prompt

RECIPE = "instructify"
IMAGE_TOKEN = "<image>"

ACCEPTED, REJECTED, STOPPED = "accepted", "rejected", "stopped"
# rejection reasons
R_LLM_ERROR, R_EMPTY, R_UNPARSEABLE, R_NO_PAIRS, R_TRUNCATED = "llm_error", "empty", "unparseable", "no_pairs", "truncated"
R_ALL_DUPLICATES, R_FIRST_QA_FAILED = "all_duplicates", "first_qa_failed"
# stop reasons
S_NO_FACTS, S_CONSUMED, S_EXHAUSTED = "no_facts", "facts_consumed", "facts_exhausted"
S_FAILURES, S_MAX_ITERATIONS = "too_many_failures", "max_iterations"
S_NO_PROMPT_FITS = "no_prompt_type_fits"  # every weighted type requires fact kinds the image no longer has

# The verification prompt: visit_assets/prompts/instructify_checks/verify.yaml (edit the text there
# and bump its `version`; conversations record it as `verify_prompt_version`).
VERIFY_PROMPT = load_prompt("verify", prompt_dir("instructify_checks"))
VERIFY_PROMPT_ID: str = VERIFY_PROMPT.id
VERIFY_PROMPT_VERSION: int = VERIFY_PROMPT.version
VERIFY_SYSTEM: str = VERIFY_PROMPT.system
VERIFY_TEMPLATE: str = VERIFY_PROMPT.template

GenerateFn = Callable[[list[LLMRequest]], list[LLMResult]]
Consume = Literal["lexical", "cited"]  # how a QA pair consumes facts (SamplingConfig.consume, GenerationConfig.consume)
CONSUME_RULES: tuple[str, ...] = get_args(Consume)


@dataclass(frozen=True)
class SamplingConfig:
    stop_fraction: float = 0.85  # stop when MORE than this share of the facts is consumed (reference)
    min_remaining_chars: int = 10  # stop when fewer characters of facts remain (reference)
    max_failures: int = 3  # stop after MORE than this many rejected iterations in a row (reference)
    max_iterations: int = 10  # iterations per image (reference)
    generation: SamplingParams = SamplingParams(temperature=0.2, max_tokens=1000)  # reference engine settings
    verification: SamplingParams = SamplingParams(temperature=0.0, max_tokens=24)
    consume: Consume = "lexical"  # lexical | cited (the verifier's "Facts:" line, lexical when it cites none)
    consume_threshold: float = 0.5  # a fact is used when this share of its content words is in the QA pair
    consume_min_score: float = 0.2  # ... and the best-matching fact is used when at least this share is

    def __post_init__(self) -> None:
        if self.consume not in CONSUME_RULES:
            raise ValueError(f"consume must be one of {CONSUME_RULES}, got {self.consume!r}")
        if not 0 < self.stop_fraction <= 1:
            raise ValueError("stop_fraction must be in (0, 1]")
        if self.max_iterations < 1 or self.max_failures < 0:
            raise ValueError("max_iterations must be >= 1 and max_failures >= 0")

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["generation"], d["verification"] = self.generation.key_dict(), self.verification.key_dict()
        return d


# ---------------------------------------------------------------------------------------------
# Fact consumption (lexical)
# ---------------------------------------------------------------------------------------------

_WORD = re.compile(r"[a-z]+")
# Function words, plus the words every layout line and caption carries: matching them says
# nothing about which fact a question used.
_STOP = frozenset("""
a about above across after again against all also am an and any are as at be because been before being below
beside between both but by can could did do does doing down during each few for from further had has have having he
her here hers him his how i if in into is it its itself just me more most my near next no nor not of off on once only
or other our out over own same she should so some such than that the their them then there these they this those
through to too under until up very was we were what when where which while who whom why will with would you your
yes there's it's image picture photo photograph shown shows showing seen visible text objects object layout
large medium small left right top bottom centre center middle size inside one two three many lot
""".split())


def _stem(w: str) -> str:
    if len(w) > 4 and w.endswith("ies"):
        return w[:-3] + "y"
    if len(w) > 4 and w.endswith(("ches", "shes", "sses", "xes")):
        return w[:-2]
    if len(w) > 3 and w.endswith("s") and not w.endswith("ss"):
        return w[:-1]
    return w


def content_words(text: str) -> frozenset[str]:
    return frozenset(_stem(w) for w in _WORD.findall(text.lower()) if w not in _STOP and len(w) > 1)


def overlap_scores(question: str, answer: str, facts: Sequence[Fact]) -> list[float]:
    """Per fact: the share of its content words that the question + answer contain."""
    qa = content_words(question + " " + answer)
    out = []
    for f in facts:
        words = content_words(f.text)
        out.append(len(words & qa) / len(words) if words else 0.0)
    return out


def consume_facts(question: str, answer: str, remaining: Sequence[Fact], threshold: float, min_score: float) -> list[Fact]:
    """Facts a verified QA pair used, by lexical overlap: every fact with score >= threshold, and
    the single best fact when its score is >= min_score (so each answered pair makes progress)."""
    if not remaining:
        return []
    scores = overlap_scores(question, answer, remaining)
    used = {i for i, s in enumerate(scores) if s >= threshold}
    best = max(range(len(scores)), key=lambda i: (scores[i], -i))
    if scores[best] >= min_score:
        used.add(best)
    return [remaining[i] for i in sorted(used)]


# ---------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------


def normalise_question(q: str) -> str:
    q = q.replace(IMAGE_TOKEN, " ").lower()
    return " ".join(re.findall(r"[a-z0-9]+", q))


def image_seed(image_id: str, seed: int) -> int:
    return int(content_hash("instructify-rng", image_id, seed), 16)


def llm_seed(image_id: str, seed: int, iteration: int) -> int:
    """Per image and iteration, so a retry after a rejection is a new sample, not a cache hit."""
    return int(content_hash("instructify-llm", image_id, seed, iteration)[:8], 16)


def conversation_id(image_id: str, prompt_id: str, prompt_version: int, model_label: str, seed: int, iteration: int) -> str:
    return content_hash(image_id, RECIPE, prompt_id, prompt_version, model_label, seed, iteration)


def _model_label(res: LLMResult | None) -> str:
    return res.model.label() if res is not None and res.model is not None else "unknown"


def _scrub(text: str) -> str:
    return text.replace(IMAGE_TOKEN, "").strip()


def to_turns(pairs: Sequence[QAPair]) -> list[dict[str, str]]:
    """LLaVA turns; `<image>\\n` before the first human turn only."""
    turns = []
    for i, p in enumerate(pairs):
        turns.append({"from": "human", "value": (IMAGE_TOKEN + "\n" if i == 0 else "") + p.question})
        turns.append({"from": "gpt", "value": p.answer})
    return turns


@dataclass
class _Image:
    record: Mapping[str, Any]
    image_id: str
    image_key: str
    facts: list[Fact]
    remaining: list[Fact]
    rng: random.Random
    iteration: int = 0
    failures: int = 0
    questions: set[str] = field(default_factory=set)
    stop: str | None = None

    def remaining_chars(self) -> int:
        return sum(len(f.text) for f in self.remaining)

    def consumed_fraction(self) -> float:
        return 1 - len(self.remaining) / len(self.facts) if self.facts else 1.0


def _stop_reason(s: _Image, cfg: SamplingConfig, registry: Registry) -> str | None:
    if not s.facts:
        return S_NO_FACTS
    if s.consumed_fraction() > cfg.stop_fraction:
        return S_CONSUMED
    if s.remaining_chars() < cfg.min_remaining_chars:
        return S_EXHAUSTED
    if s.failures > cfg.max_failures:
        return S_FAILURES
    if s.iteration >= cfg.max_iterations:
        return S_MAX_ITERATIONS
    if not registry.drawable(features(s.remaining)):
        return S_NO_PROMPT_FITS
    return None


def _facts_of(record: Mapping[str, Any]) -> list[Fact]:
    given = record.get("facts")
    if given is None:
        return facts_for(record)
    return [f if isinstance(f, Fact) else Fact.from_dict(f) for f in given]


ATTEMPT_FIELDS = (
    "image_id", "image_key", "iteration", "status", "reason", "detail", "prompt_id", "prompt_version", "prompt_hash",
    "slots", "llm_status", "parse_status", "pairs_expected", "pairs_parsed", "duplicates", "verdicts", "pairs_kept",
    "consumed_fact_ids", "facts_total", "facts_before", "facts_remaining", "consecutive_failures", "conversation_id",
    "model", "generation_cache_key", "verify_cache_keys",
)


def _attempt(**kw: Any) -> dict[str, Any]:
    row: dict[str, Any] = {k: None for k in ATTEMPT_FIELDS}
    row.update(duplicates=[], verdicts=[], consumed_fact_ids=[], verify_cache_keys=[])
    unknown = set(kw) - set(ATTEMPT_FIELDS)
    if unknown:
        raise KeyError(unknown)
    row.update(kw)
    return row


@dataclass
class _Pending:
    """One image's iteration between the generation and the verification call."""

    state: _Image
    prompt: PromptType
    slots: dict[str, Any]
    result: LLMResult
    facts_before: int
    pairs: list[QAPair] = field(default_factory=list)
    verify_at: list[int] = field(default_factory=list)  # indices into the verification batch
    reason: str | None = None
    detail: list[str] = field(default_factory=list)
    parse_status: str | None = None
    pairs_parsed: int = 0
    duplicates: list[str] = field(default_factory=list)


def _call(generate: GenerateFn, requests: list[LLMRequest]) -> list[LLMResult]:
    results = list(generate(requests))
    if len(results) != len(requests):
        raise RuntimeError(f"generate returned {len(results)} results for {len(requests)} requests")
    return results


def _status_problem(res: LLMResult) -> tuple[str, list[str]] | None:
    """(reason, detail) when a generation result has no text worth parsing."""
    if res.status == ERROR:
        return R_LLM_ERROR, [res.error or "error"]
    if res.status == EMPTY or not res.text.strip():
        return R_EMPTY, []
    if res.status not in (OK, TRUNCATED):
        return R_UNPARSEABLE, [f"llm status {res.status}: {res.error or ''}".strip()]
    return None


def _drop_seen(p: _Pending, pairs: list[QAPair]) -> list[QAPair]:
    """Pairs whose question was not asked before (about this image, or earlier in this reply)."""
    seen = set(p.state.questions)
    kept = []
    for q in pairs:
        key = normalise_question(q.question)
        if not key or key in seen:
            p.duplicates.append(q.question)
            continue
        seen.add(key)
        kept.append(q)
    return kept


def _prepare(p: _Pending) -> None:
    """Status, parse, caps and dedup of one generation result (no LLM call)."""
    res = p.result
    problem = _status_problem(res)
    if problem is not None:
        p.reason, p.detail = problem[0], problem[1]
        return
    parsed = parse_qa(res.text)
    p.parse_status, p.pairs_parsed = parsed.status, len(parsed.pairs)
    if parsed.status == PARTIAL:
        p.detail.extend(parsed.problems)
    if not parsed.pairs:
        p.reason = R_TRUNCATED if res.status == TRUNCATED else (R_NO_PAIRS if parsed.status == "no_pairs" else parsed.status)
        p.detail.extend(parsed.problems)
        return
    pairs = [QAPair(_scrub(q.question), _scrub(q.answer)) for q in parsed.pairs]
    pairs = [q for q in pairs if q.question and q.answer]
    if res.status == TRUNCATED:
        pairs = pairs[:-1]  # the reply was cut at max_tokens: its last pair may be cut too
        p.detail.append("reply truncated: last pair dropped")
        if not pairs:
            p.reason = R_TRUNCATED
            return
    expected = p.prompt.expected_pairs(p.slots)
    if len(pairs) > expected:
        p.detail.append(f"{len(pairs) - expected} pair(s) beyond the {expected} asked for dropped")
        pairs = pairs[:expected]
    kept = _drop_seen(p, pairs)
    if not kept:
        p.reason = R_ALL_DUPLICATES if pairs else R_NO_PAIRS
        return
    p.pairs = kept


def _verify_request(s: _Image, pair: QAPair, cfg: SamplingConfig, tag: Any) -> LLMRequest:
    # values inserted as they are (strip=False), exactly as the prompt has always been rendered
    user = VERIFY_PROMPT.render_values(
        {"facts": format_facts(s.facts), "question": pair.question, "answer": pair.answer}, strip=False)
    return LLMRequest.chat(user, system=VERIFY_PROMPT.system, params=cfg.verification, tag=tag)


def _verify_requests(pending: list[_Pending], cfg: SamplingConfig) -> list[LLMRequest]:
    """One request per parsed pair of the round; each _Pending notes where its pairs' requests are."""
    requests: list[LLMRequest] = []
    for p in pending:
        for j, pair in enumerate(p.pairs):
            p.verify_at.append(len(requests))
            requests.append(_verify_request(p.state, pair, cfg, (p.state.image_id, p.state.iteration, j)))
    return requests


def _first_pair_failure(p: _Pending, verdicts: list[bool | None], vres: list[LLMResult]) -> str | None:
    """R_FIRST_QA_FAILED (and why, in the detail) unless the first pair was verified True."""
    if verdicts[0] is True:
        return None
    why = "verdict unparseable" if verdicts[0] is None else "verdict False"
    if vres[0].status not in (OK, TRUNCATED):
        why = f"verifier {vres[0].status}: {vres[0].error or ''}".strip()
    p.detail.append(f"first pair: {why}")
    return R_FIRST_QA_FAILED


def _facts_used(s: _Image, pair: QAPair, v: LLMResult, cfg: SamplingConfig) -> tuple[list[Fact], str]:
    """The remaining facts a verified pair used, and how that was decided ("cited" or "lexical")."""
    if cfg.consume == "cited":
        refs = parse_fact_refs(v.text, len(s.facts))
        if refs:
            cited = {s.facts[i - 1].fact_id for i in refs}
            return [f for f in s.remaining if f.fact_id in cited], "cited"
    used = consume_facts(pair.question, pair.answer, s.remaining, cfg.consume_threshold, cfg.consume_min_score)
    return used, "lexical"


def _attempt_base(p: _Pending, verdicts: list[bool | None], vres: list[LLMResult]) -> dict[str, Any]:
    """The attempt fields an iteration has whether it is accepted or rejected."""
    s = p.state
    return dict(
        image_id=s.image_id, image_key=s.image_key, iteration=s.iteration, **p.prompt.ref(),
        slots=stable_json(p.slots), llm_status=p.result.status, parse_status=p.parse_status,
        pairs_expected=p.prompt.expected_pairs(p.slots), pairs_parsed=p.pairs_parsed, duplicates=p.duplicates,
        verdicts=verdicts, facts_total=len(s.facts), facts_before=p.facts_before, model=_model_label(p.result),
        generation_cache_key=p.result.cache_key, verify_cache_keys=[v.cache_key for v in vres],
    )


@dataclass
class _Lane:
    """One group of images run round by round, and the rows it made. Lanes share nothing but
    `stop`, which any lane's failure sets so the others end at their next round."""

    images: list[_Image]
    cfg: SamplingConfig
    seed: int
    registry: Registry
    generate: GenerateFn
    verify: GenerateFn
    stop: threading.Event
    conversations: list[dict[str, Any]] = field(default_factory=list)
    attempts: list[dict[str, Any]] = field(default_factory=list)
    mix: dict[str, str] = field(default_factory=dict)  # the prompt mix every conversation records

    def run(self) -> None:
        """Rounds until every image has stopped (or `stop` is set): one generate, one verify call each."""
        self.mix = {"prompt_profile": self.registry.profile, "prompt_weights": stable_json(self.registry.weights())}
        while True:
            active = self._active()
            if not active or self.stop.is_set():
                break
            pending = self._generate(active)
            vrequests = _verify_requests(pending, self.cfg)
            if self.stop.is_set():  # another lane failed: its error is raised, this round's rows would be dropped
                break
            vresults = _call(self.verify, vrequests) if vrequests else []
            for p in pending:
                self._record(p, [vresults[i] for i in p.verify_at])

    def _active(self) -> list[_Image]:
        """Images still running; an image's stop reason is set once, when a stop rule first applies."""
        for s in self.images:
            if s.stop is None:
                s.stop = _stop_reason(s, self.cfg, self.registry)
        return [s for s in self.images if s.stop is None]

    def _generate(self, active: list[_Image]) -> list[_Pending]:
        """Draw each active image's prompt, send them all in one call, and prepare each reply."""
        pending, requests = [], []
        for s in active:
            prompt, slots = sample_prompt(self.registry, s.rng, features(s.remaining))
            params = replace(self.cfg.generation, seed=llm_seed(s.image_id, self.seed, s.iteration))
            requests.append(LLMRequest(tuple(render(prompt, s.remaining, slots)), params, tag=(s.image_id, s.iteration)))
            pending.append(_Pending(s, prompt, slots, None, len(s.remaining)))  # type: ignore[arg-type]
        for p, res in zip(pending, _call(self.generate, requests), strict=True):
            p.result = res
            _prepare(p)
        return pending

    def _record(self, p: _Pending, vres: list[LLMResult]) -> None:
        """Accept or reject one image's iteration from its verdicts, and move it to the next."""
        verdicts = [parse_verdict(v.text) if v.status in (OK, TRUNCATED) else None for v in vres]
        row = _attempt_base(p, verdicts, vres)
        reason = p.reason if p.reason is not None else _first_pair_failure(p, verdicts, vres)
        if reason is None:
            self._accept(p, row, verdicts, vres)
        else:
            s = p.state
            s.failures += 1
            self.attempts.append(_attempt(**row, status=REJECTED, reason=reason, detail="; ".join(p.detail) or None,
                                          pairs_kept=0, facts_remaining=len(s.remaining), consecutive_failures=s.failures))
        p.state.iteration += 1

    def _accept(self, p: _Pending, row: dict[str, Any], verdicts: list[bool | None], vres: list[LLMResult]) -> None:
        """The verified pairs become a conversation; the facts they used are consumed."""
        s = p.state
        kept: list[QAPair] = []
        pair_rows: list[dict[str, Any]] = []
        consumed_ids: list[str] = []
        for pair, verdict, v in zip(p.pairs, verdicts, vres, strict=True):
            if verdict is not True:
                p.detail.append(f"pair dropped (verdict {verdict}): {pair.question[:60]!r}")
                continue
            used, how = _facts_used(s, pair, v, self.cfg)  # against what earlier pairs left
            ids = {f.fact_id for f in used}
            s.remaining = [f for f in s.remaining if f.fact_id not in ids]
            consumed_ids.extend(f.fact_id for f in used)
            kept.append(pair)
            s.questions.add(normalise_question(pair.question))
            pair_rows.append({"question": pair.question, "answer": pair.answer, "verdict": True,
                              "consumed_fact_ids": [f.fact_id for f in used], "consumed_by": how})
        conversation = self._conversation(p, kept, pair_rows, consumed_ids, vres)
        self.conversations.append(conversation)
        s.failures = 0
        self.attempts.append(_attempt(**row, status=ACCEPTED, detail="; ".join(p.detail) or None, pairs_kept=len(kept),
                                      consumed_fact_ids=consumed_ids, facts_remaining=len(s.remaining),
                                      consecutive_failures=0, conversation_id=conversation["conversation_id"]))

    def _conversation(self, p: _Pending, kept: list[QAPair], pair_rows: list[dict[str, Any]],
                      consumed_ids: list[str], vres: list[LLMResult]) -> dict[str, Any]:
        s = p.state
        label = _model_label(p.result)
        return {
            "conversation_id": conversation_id(s.image_id, p.prompt.id, p.prompt.version, label, self.seed, s.iteration),
            "image_id": s.image_id, "image_key": s.image_key, "recipe": RECIPE,
            **p.prompt.ref(), **self.mix, "slots": stable_json(p.slots),
            "iteration": s.iteration, "seed": self.seed, "model": label,
            "verifier_models": sorted({_model_label(v) for v in vres}), "verify_prompt_version": VERIFY_PROMPT_VERSION,
            "turns": to_turns(kept), "pairs": pair_rows, "consumed_fact_ids": consumed_ids,
            "generation_cache_key": p.result.cache_key, "verify_cache_keys": [v.cache_key for v in vres],
        }


def _image_states(records: Sequence[Mapping[str, Any]], seed: int) -> list[_Image]:
    """One state per record, in image_id order (so batch order never depends on the input order)."""
    states: dict[str, _Image] = {}
    for r in records:
        iid = r["image_id"]
        if iid in states:
            raise ValueError(f"image_id {iid} appears twice in the records")
        facts = _facts_of(r)
        states[iid] = _Image(r, iid, str(r.get("image_key") or ""), facts, list(facts), random.Random(image_seed(iid, seed)))
    return [states[k] for k in sorted(states)]


def _run_lanes(lanes: list[_Lane]) -> None:
    """Run the lanes, in threads when there are several; the first failure stops the rest and is raised."""
    if len(lanes) == 1:
        lanes[0].run()
        return
    stop = lanes[0].stop

    def run(lane: _Lane) -> None:
        try:
            lane.run()
        except BaseException:
            stop.set()
            raise

    with ThreadPoolExecutor(max_workers=len(lanes), thread_name_prefix="instructify-lane") as pool:
        futures = [pool.submit(run, lane) for lane in lanes]
        try:
            for f in futures:
                f.result()
        except BaseException:  # a lane failed, or this thread was interrupted (a run terminated)
            stop.set()
            raise


def _stopped_row(s: _Image) -> dict[str, Any]:
    """The final attempt row of an image, naming the rule that stopped it."""
    return _attempt(image_id=s.image_id, image_key=s.image_key, iteration=s.iteration, status=STOPPED,
                    reason=s.stop, facts_total=len(s.facts), facts_before=len(s.remaining),
                    facts_remaining=len(s.remaining), consecutive_failures=s.failures,
                    detail=f"{s.iteration} iteration(s), {len(s.facts) - len(s.remaining)} of {len(s.facts)} facts consumed")


def sample_conversations(
    records: Sequence[Mapping[str, Any]],
    registry: Registry,
    generate: GenerateFn,
    config: SamplingConfig | None = None,
    seed: int = 0,
    verify: GenerateFn | None = None,
    lanes: int = 1,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(conversations, attempts) for grouped image records.

    A record needs `image_id` (and `image_key` for the export); its facts are `record["facts"]`
    (Facts or their dicts, e.g. after the declarative QA rewrite) or else `facts_for(record)`.
    `generate` is e.g. `LLMClient.generate`; `verify` (default: `generate`) answers the verification
    prompts, so a stronger model can check a weaker one. Each is called at most once per round.

    `lanes` > 1 splits the images into that many groups whose rounds run in threads, so one group's
    CPU work (parsing, fact matching, the next prompts) overlaps the other's requests in flight and a
    round's slowest replies do not leave the server idle; `generate` and `verify` must then be
    thread-safe (LLMClient is). The requests are the same for any number of lanes (every image draws
    on its own random stream, nothing of one image depends on another), and so are the rows when each
    reply depends only on its request.
    """
    if lanes < 1:
        raise ValueError(f"lanes must be >= 1, got {lanes}")
    cfg = config or SamplingConfig()
    order = _image_states(records, seed)
    groups = [order[i::lanes] for i in range(min(lanes, len(order)))] or [order]
    stop = threading.Event()
    run = [_Lane(g, cfg, seed, registry, generate, verify or generate, stop) for g in groups]
    _run_lanes(run)
    conversations = [c for lane in run for c in lane.conversations]
    attempts = [a for lane in run for a in lane.attempts] + [_stopped_row(s) for s in order]
    attempts.sort(key=lambda a: (a["image_id"], a["iteration"], a["status"] == STOPPED))
    conversations.sort(key=lambda c: (c["image_id"], c["iteration"]))
    return conversations, attempts


def summarize(conversations: Sequence[Mapping[str, Any]], attempts: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Counts for run metadata: iterations by status and reason, stop reasons, pairs, prompts."""
    its = [a for a in attempts if a["status"] != STOPPED]
    return {
        "images": sum(1 for a in attempts if a["status"] == STOPPED),
        "iterations": len(its),
        "conversations": len(conversations),
        "pairs": sum(len(c["pairs"]) for c in conversations),
        "accepted": sum(1 for a in its if a["status"] == ACCEPTED),
        "rejected_by_reason": dict(sorted(Counter(a["reason"] for a in its if a["status"] == REJECTED).items())),
        "stopped_by_reason": dict(sorted(Counter(a["reason"] for a in attempts if a["status"] == STOPPED).items())),
        "duplicates_removed": sum(len(a["duplicates"]) for a in its),
        "conversations_by_prompt": dict(sorted(
            Counter(f"{c['prompt_id']}@v{c['prompt_version']}" for c in conversations).items())),
    }
