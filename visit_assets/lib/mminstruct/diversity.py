"""Diversity of generated instructions (MM-Instruct's Figure 7 analysis, without a parser).

- root verb: the first word of the instruction after politeness words ("please", "now"), lower
  case. MM-Instruct parses verb + object with a dependency parser; imperative instructions start
  with their verb, so the first word is a close, dependency-free stand-in (recorded as such).
- direct object: the head of the noun phrase after the verb, guessed as the last word before the
  phrase ends (a preposition, conjunction, copula or participle), determiners and pronouns left
  out; none when the verb takes a clause ("explain why ..."). No dependency parser ships offline
  (spaCy's models are not on PyPI): the guess is recorded as such beside the figures.
- ROUGE-L: F-measure of the longest common token subsequence with the most similar seed; high
  means the LLM copied a seed, low means a new instruction.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Sequence

_TOKEN = re.compile(r"[a-z0-9']+")
_LEAD = {"please", "now", "kindly", "then", "first"}


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def root_verb(instruction: str) -> str | None:
    words = [w for w in tokens(instruction) if w not in _LEAD]
    return words[0] if words else None


# words that end the noun phrase after the verb, and words that are not its head
_PHRASE_END = {"in", "of", "on", "about", "for", "with", "to", "from", "at", "by", "as", "into", "onto", "over",
               "under", "between", "within", "without", "through", "like", "using", "while", "where", "when",
               "that", "which", "who", "and", "or", "but", "so", "if", "because", "is", "are", "was", "were", "be"}
_NOT_HEAD = {"a", "an", "the", "this", "that", "these", "those", "its", "their", "his", "her", "my", "your", "our",
             "some", "any", "each", "every", "all", "both", "few", "several", "more", "most", "other", "another",
             "such", "me", "us", "it", "them", "him", "you", "one"}
_CLAUSE = {"what", "why", "how", "where", "when", "who", "which", "whether", "if"}  # the verb takes a clause


def verb_object(instruction: str) -> tuple[str | None, str | None]:
    """(root verb, direct object) by the rule of the module docstring; (None, None) for no words."""
    words = [w for w in tokens(instruction) if w not in _LEAD]
    if not words:
        return None, None
    verb, rest = words[0], words[1:]
    if not rest or rest[0] in _CLAUSE:
        return verb, None
    phrase: list[str] = []
    for w in rest:
        if w in _PHRASE_END or (phrase and w.endswith(("ed", "ing")) and phrase[-1] not in _NOT_HEAD):
            break  # "a short story inspired by ..." ends at the participle
        if w not in _NOT_HEAD:
            phrase.append(w)
    return verb, (phrase[-1] if phrase else None)


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Longest common subsequence by dynamic programming over one row (O(len(a) * len(b)))."""
    if len(a) < len(b):
        a, b = b, a
    row = [0] * (len(b) + 1)
    for x in a:
        prev = 0
        for j, y in enumerate(b, start=1):
            prev, row[j] = row[j], prev + 1 if x == y else max(row[j], row[j - 1])
    return row[-1]


def rouge_l(candidate: str, reference: str) -> float:
    c, r = tokens(candidate), tokens(reference)
    if not c or not r:
        return 0.0
    lcs = lcs_length(c, r)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(c), lcs / len(r)
    return 2 * precision * recall / (precision + recall)


def nearest_seed_rouge_l(instructions: Sequence[str], seeds: Sequence[str]) -> list[float]:
    return [max((rouge_l(i, s) for s in seeds), default=0.0) for i in instructions]


ROUGE_SAMPLE = 1000  # ROUGE-L is quadratic per pair in pure Python: a seeded sample above this many


def diversity_report(instructions: Sequence[str], seeds: Sequence[str], sample: int | None = None) -> dict:
    """Root verbs over every instruction; ROUGE-L to the nearest seed over all, or over a seeded
    sample of `sample` instructions (recorded) when there are more."""
    verbs = Counter(v for v in map(root_verb, instructions) if v)
    pairs = Counter(f"{v} {o}" for v, o in map(verb_object, instructions) if v and o)
    scored = list(instructions)
    if sample is not None and len(scored) > sample:
        scored = random.Random(0).sample(scored, sample)
    scores = nearest_seed_rouge_l(scored, seeds)
    return {
        "instructions": len(instructions),
        "distinct_root_verbs": len(verbs),
        "top_root_verbs": verbs.most_common(10),
        "mean_rouge_l_to_nearest_seed": round(sum(scores) / len(scores), 4) if scores else None,
        "share_rouge_l_over_0_7": round(sum(s > 0.7 for s in scores) / len(scores), 4) if scores else None,
        "rouge_l_over": len(scores),
        "distinct_verb_objects": len(pairs),
        "top_verb_objects": pairs.most_common(10),
        "root_verb_method": "first word (no dependency parser)",
        "verb_object_method": "first word + the last word of the noun phrase after it (no dependency parser)",
    }


def seeds_report(seeds: Sequence[str]) -> dict:
    """The seed set against itself: `diversity_report` with each seed's ROUGE-L to its nearest
    other seed (leave-one-out), how far apart the hand-written set is."""
    loo = [max((rouge_l(s, o) for j, o in enumerate(seeds) if j != i), default=0.0) for i, s in enumerate(seeds)]
    return {**diversity_report(seeds, seeds), "mean_rouge_l_to_nearest_seed": round(sum(loo) / len(loo), 4) if loo else None,
            "share_rouge_l_over_0_7": round(sum(x > 0.7 for x in loo) / len(loo), 4) if loo else None}


def length_summary(texts: Sequence[str]) -> dict:
    """Word counts: n, mean, 10th / 50th / 90th percentile and max (MM-Instruct's length figures)."""
    words = sorted(len(tokens(t)) for t in texts)
    if not words:
        return {"n": 0}
    at = lambda q: words[min(len(words) - 1, int(q * len(words)))]  # noqa: E731  (nearest rank)
    return {"n": len(words), "mean": round(sum(words) / len(words), 1), "p10": at(0.1), "p50": at(0.5),
            "p90": at(0.9), "max": words[-1]}


def length_plot(series: dict[str, Sequence[str]]) -> bytes:
    """PNG: a histogram of word counts per named list of texts (drawn off-screen)."""
    import io

    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure  # no pyplot: no global state shared between steps

    fig = Figure(figsize=(6, 3), dpi=90)
    ax = fig.subplots()
    counts = {name: [len(tokens(t)) for t in texts] for name, texts in series.items() if texts}
    top = max((max(c) for c in counts.values()), default=1)
    for name, c in counts.items():
        ax.hist(c, bins=range(0, top + 2), alpha=0.6, label=f"{name} ({len(c)})", density=True)
    ax.set(xlabel="words", ylabel="share", title="length distribution")
    if counts:  # nothing generated: an empty plot, no legend
        ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
