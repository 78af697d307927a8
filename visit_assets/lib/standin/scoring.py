"""The stand-in's log against what the product made of it: did every planted fault end as a
reject with the right reason, and was every clean reply kept? Pure: rows in, a report out.

Rows are plain dicts as the product stores them: `attempts` (conversation_attempts), `generated`
(generated_conversations), `kept` (filtered_conversations), `rejects` (conversation_rejects).
Instructify replies are joined to their attempt by the request seed (sampling.llm_seed of image,
seed and iteration), their pairs to the image's conversations by text, a verdict to its image by
the digest of the facts it was shown; MM-Instruct answers to their conversation by the answer text.

What the verification figures measure: whether the product drops what its verifier rejects (and
what the verifier could not judge), not how good a verifier is: here the verifier is the stand-in,
grading claims the stand-in planted.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from . import faults as F

VERIFICATION, UNCLEAR = "verification (pairs with an unsupported claim)", "unclear verdict (pair dropped)"
# check -> (faults it must catch, product reasons that count as catching them)
INSTRUCTIFY_CHECKS = {
    "parse (unparseable, refusal, empty reply)": ({F.UNPARSEABLE, F.REFUSAL, F.EMPTY}, {"unparseable", "no_pairs", "empty"}),
    "truncation (finish_reason length)": ({F.TRUNCATED}, {"truncated", "reply truncated"}),
    "repetition filter": ({F.REPETITION}, {"repetition"}),
}
FILTER_STAGE = {"repetition filter"}  # checks that only see accepted conversations
MM_CHECKS = {
    "truncated": ({F.TRUNCATED}, {"truncated", "ends_mid_sentence"}),
    "repetition": ({F.REPETITION}, {"repetition"}),
    "refusal": ({F.REFUSAL}, {"refusal"}),
    "mentions_source_text": ({F.SOURCE_LEAK}, {"mentions_source_text"}),
    "too_short": ({F.TOO_SHORT}, {"too_short"}),
}
NOT_ASKED = "not asked"


def confusion(pairs: Iterable[tuple[bool, bool]]) -> dict[str, Any]:
    """(truth, flagged) pairs -> counts, precision and recall (None when undefined)."""
    c = Counter((t, f) for t, f in pairs)
    return rates(c[(True, True)], c[(False, True)], c[(True, False)], c[(False, False)])


def rates(tp: int, fp: int, fn: int, tn: int) -> dict[str, Any]:
    return {"tp": tp, "fp": fp, "fn": fn, "tn": tn,
            "precision": round(tp / (tp + fp), 4) if tp + fp else None,
            "recall": round(tp / (tp + fn), 4) if tp + fn else None}


def _fault(e: Mapping) -> str | None:
    return e.get("fault") or (F.TRUNCATED if e.get("cut_at_max_tokens") else None)


def _text(s: str) -> str:
    return " ".join(s.replace("<image>", "").split())


def _pairs_by_image(conversations: Sequence[Mapping]) -> set[tuple[str, str, str]]:
    out: set[tuple[str, str, str]] = set()
    for c in conversations:
        turns = c.get("turns") or []
        out.update((c["image_id"], _text(h["value"]), _text(g["value"]))
                   for h, g in zip(turns[::2], turns[1::2], strict=False))
    return out


def instructify_report(log: Sequence[Mapping], attempts: Sequence[Mapping], generated: Sequence[Mapping],
                       kept: Sequence[Mapping], rejects: Sequence[Mapping], seed_of: Callable[[str, int], int],
                       facts_digest: Mapping[str, int]) -> dict[str, Any]:
    """Outcome of every answered Instructify generation reply, and each check's precision/recall.

    A pair whose verdict itself carries a planted fault (an unclear reply) is scored by the
    "unclear verdict" check, the others by the verification check."""
    replies = {e["seed"]: e for e in log if e.get("role") == "generate" and e.get("status") == 200}
    unclear = {(e["facts"], _text(e["pair"]["question"]), _text(e["pair"]["answer"])) for e in log
               if e.get("role") == "verify" and e.get("status") == 200 and e.get("fault")}
    kept_ids = {c["conversation_id"] for c in kept}
    reject_reason = {c["conversation_id"]: c.get("reason") for c in rejects}
    verified = _pairs_by_image([c for c in generated if c.get("recipe") == "instructify"])
    outcomes: Counter[str] = Counter()
    pairs, checks = defaultdict(list), defaultdict(list)
    clean_lost: Counter[str] = Counter()
    clean_duplicates = 0
    for a in attempts:
        if a.get("recipe") not in (None, "instructify") or a["status"] == "stopped":
            continue
        e = replies.get(seed_of(a["image_id"], a["iteration"]))
        if e is None:
            outcomes["attempt without a logged reply"] += 1
            continue
        fault, cid = _fault(e), a.get("conversation_id")
        where = (f"rejected: {a['reason']}" if a["status"] == "rejected"
                 else "kept" if cid in kept_ids else f"filtered: {reject_reason.get(cid)}")
        judged = _judged_pairs(a, e, verified, unclear, facts_digest.get(a["image_id"]))
        first_unclear = bool(judged) and judged[0][0] == UNCLEAR  # the product's first pair: after repeats are dropped
        outcomes[f"{fault or 'clean'}{' (first verdict unclear)' if first_unclear else ''} -> {where}"] += 1
        said = {a.get("reason"), reject_reason.get(cid)}
        if "reply truncated" in (a.get("detail") or ""):
            said.add("reply truncated")
        for name, (faults, reasons) in INSTRUCTIFY_CHECKS.items():
            if name in FILTER_STAGE and not (a["status"] == "accepted" and all(
                    (a["image_id"], _text(p["question"]), _text(p["answer"])) in verified
                    for p in e["pairs"] if p["planted"])):
                continue  # rejected before the filters ran, or the faulty pair was already dropped
            checks[name].append((fault in faults, bool(said & reasons)))
        if fault is None and not first_unclear and where == "rejected: all_duplicates":
            clean_duplicates += 1
        elif fault is None and not first_unclear and where != "kept":
            clean_lost[where] += 1
        if fault in (None, F.UNSUPPORTED):
            for check, truth, dropped, _ in judged:
                pairs[check].append((truth, dropped))
    return {"outcomes": dict(sorted(outcomes.items())), "clean_replies_not_kept": dict(clean_lost),
            "clean_replies_dropped_as_repeated_questions": clean_duplicates,
            "checks": {VERIFICATION: confusion(pairs[VERIFICATION]), UNCLEAR: confusion(pairs[UNCLEAR]),
                       **{k: confusion(v) for k, v in checks.items()}}}


def _judged_pairs(a: Mapping, e: Mapping, verified: set, unclear: set, facts: int | None) -> list[tuple]:
    """(check, should be dropped, was dropped, pair) per pair of the reply the verifier judged.
    Pairs the product dropped as repeated questions, and pairs after a failed first pair, were not."""
    if not (a["status"] == "accepted" or a.get("reason") == "first_qa_failed"):
        return []
    # the product drops a question asked before (in an earlier iteration: every copy in this reply)
    # or earlier in the same reply (every copy after the first)
    dropped_copies = Counter(_text(q) for q in a.get("duplicates") or [])
    copies = Counter(_text(p["question"]) for p in e.get("pairs") or [])
    seen: set[str] = set()
    out: list[tuple] = []
    for p in e.get("pairs") or []:
        q, ans = _text(p["question"]), _text(p["answer"])
        repeated = q in seen or dropped_copies[q] == copies[q]
        seen.add(q)
        if repeated or (a["status"] == "rejected" and out):  # after the first pair failed: never judged
            continue
        dropped = a["status"] == "rejected" or (a["image_id"], q, ans) not in verified
        out.append((UNCLEAR, True, dropped, p) if (facts, q, ans) in unclear else (VERIFICATION, p["planted"], dropped, p))
    return out


def mminstruct_report(log: Sequence[Mapping], attempts: Sequence[Mapping], generated: Sequence[Mapping],
                      kept: Sequence[Mapping], rejects: Sequence[Mapping]) -> dict[str, Any]:
    """Each MM-Instruct filter's precision/recall over the answers, and the fit check's. A faulty
    answer that left no conversation row counts as missed by its check (an empty reply must leave
    an attempt row instead: `empty_replies` == `empty_attempt_rows`)."""
    answers = [e for e in log if e.get("role") == "answer" and e.get("status") == 200]
    rows = {_text(c["turns"][1]["value"]): c for c in generated if c.get("recipe") == "mm-instruct"}
    kept_ids = {c["conversation_id"] for c in kept}
    reason = {c["conversation_id"]: c.get("reason") for c in rejects}
    fits = {(e["instruction"], e["scene"]): None if e.get("fault") else e["truth"]["fits"]  # None: a planted unclear reply
            for e in log if e.get("role") == "fit" and e.get("status") == 200}
    outcomes: Counter[str] = Counter()
    checks, fit_pairs, unclear_fit = defaultdict(list), [], []
    clean_lost: Counter[str] = Counter()
    for e in answers:
        row, fault = rows.get(_text(e.get("reply") or "")), _fault(e)
        got = "no conversation row" if row is None else None if row["conversation_id"] in kept_ids \
            else reason.get(row["conversation_id"], "missing")
        outcomes[f"{fault or 'clean'} -> {got or 'kept'}"] += 1
        if fault == F.EMPTY:
            continue
        for name, (faults, reasons) in MM_CHECKS.items():
            checks[name].append((fault in faults, got in reasons))
        fit = fits.get((_text(row["turns"][0]["value"]), e["scene"]), NOT_ASKED) if row else NOT_ASKED
        if fault is None and fit is None:
            unclear_fit.append((True, got == "fit_check_unclear"))
        elif fault is None and fit != NOT_ASKED:
            fit_pairs.append((not fit, got == "instruction_does_not_fit"))
        if fault is None and got is not None and (got, fit) not in (("instruction_does_not_fit", False),
                                                                     ("fit_check_unclear", None)):
            clean_lost[got] += 1
    return {"outcomes": dict(sorted(outcomes.items())), "clean_answers_not_kept": dict(clean_lost),
            "empty_replies": sum(1 for e in answers if e.get("fault") == F.EMPTY),
            "empty_attempt_rows": sum(1 for a in attempts
                                      if a.get("recipe") == "mm-instruct" and a.get("reason") == "llm_empty"),
            "checks": {**{k: confusion(v) for k, v in checks.items()}, "fit check": confusion(fit_pairs),
                       "unclear fit verdict (answer dropped)": confusion(unclear_fit)}}


def examples_report(log: Sequence[Mapping], examples: Sequence[Mapping]) -> dict[str, Any]:
    """Stage-1 answers (the teacher's in-context examples, `instruction_examples` rows) under the
    answers' filters: a planted fault must leave its reply out of the example bank with the right
    reason, a clean one must stay in. Replies meet their row by text."""
    replies = [e for e in log if e.get("role") == "example_answer" and e.get("status") == 200]
    rows = {_text(r.get("raw_text") or ""): r for r in examples}
    outcomes: Counter[str] = Counter()
    clean_lost: Counter[str] = Counter()
    checks = defaultdict(list)
    for e in replies:
        row, fault = rows.get(_text(e.get("reply") or "")), _fault(e)
        got = "no example row" if row is None else None if row["kept"] else row["filter_reason"]
        outcomes[f"{fault or 'clean'} -> {got or 'kept'}"] += 1
        if fault is None and got is not None:
            clean_lost[got] += 1
        if fault == F.EMPTY:
            continue
        for name, (faults, reasons) in MM_CHECKS.items():
            checks[name].append((fault in faults, got in reasons))
    return {"outcomes": dict(sorted(outcomes.items())), "clean_examples_not_kept": dict(clean_lost),
            "empty_replies": sum(1 for e in replies if e.get("fault") == F.EMPTY),
            "empty_example_rows": sum(1 for r in examples if r.get("filter_reason") == "empty"),
            "kept": sum(1 for r in examples if r.get("kept")),
            "checks": {k: confusion(v) for k, v in checks.items()}}


def transport_report(log: Sequence[Mapping], answered: Mapping[str, int]) -> dict[str, Any]:
    """Planted 5xx and slow replies, and whether any answered request was sent again."""
    return {"server_errors": sum(1 for e in log if e.get("transport") == F.SERVER_ERROR and e.get("status") == 503),
            "slow": sum(1 for e in log if e.get("transport") == F.SLOW),
            "answered": sum(answered.values()),
            "answered_more_than_once": sum(1 for n in answered.values() if n > 1),
            "refused": sum(1 for e in log if e.get("status") in (400, 500))}


def planted(log: Sequence[Mapping]) -> dict[str, dict[str, int]]:
    out: dict[str, Counter] = defaultdict(Counter)
    for e in log:
        if e.get("status") == 200:
            out[e["role"]][e.get("fault") or "clean"] += 1
    return {r: dict(sorted(c.items())) for r, c in sorted(out.items())}
