"""Metadata to text: a grouped image record becomes a list of `Fact`s the sampling loop consumes.

Pure and deterministic. Kinds:
- caption: one fact per distinct caption;
- object: one fact for the object counts, then one per top-level subtree of the hierarchical
  layout (an object together with the objects that lie inside or on it), so consuming "the
  person" also consumes the patch on the person's suit;
- qa: "Question? Answer." text, optionally rewritten as a declarative sentence by an LLM
  (`qa_to_declarative_requests` + `apply_declarative`);
- ocr: one fact per visible text line.

A fact's id is the content hash of (image_id, kind, text): the same text of the same image always
has the same id, and a rewrite (new text) gets a new id that names the fact it came from.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from visit_assets.lib.ids import content_hash
from visit_assets.lib.llm.types import OK, LLMRequest, LLMResult, SamplingParams
from visit_assets.lib.metadata.describe import MANY, position, size_word
from visit_assets.lib.metadata.describe import plural as _describe_plural
from visit_assets.lib.prompts import load_prompt, prompt_dir

KINDS = ("caption", "object", "qa", "ocr")
REGION = "region"  # what a prompt type may also require: an object fact that gives a region (a layout line)
FEATURES = (*KINDS, REGION)
_GEOMETRY = "centre ("  # how a layout line writes a region (_node_line)

CONTAIN_FRACTION = 0.90  # a box lies inside/on another when >= 90% of its area is inside the larger one
DUPLICATE_IOU = 0.90  # same-label boxes overlapping this much are one object annotated twice (merged)
GRID = 0.05  # coordinates shown are rounded to 0.05 (Instructify's layout rule)
MIN_DECLARATIVE_CHARS = 10  # rewritten lines of 10 characters or fewer are dropped (Instructify's rule)
# Depth bands. A box may carry `depth`, its relative distance from the camera in [0, 1] (0 nearest;
# written by the user into the record format, never estimated here). Instructify names depth bands
# but publishes no thresholds: equal thirds are this product's choice.
FOREGROUND_BELOW = 1 / 3  # depth < 1/3: foreground
BACKGROUND_FROM = 2 / 3  # depth >= 2/3: background; between the two: middle ground

# The QA-to-declarative prompt: visit_assets/prompts/instructify_checks/declarative.yaml (edit the
# text there and bump its `version`; facts record it as `declarative_prompt_version`).
DECLARATIVE_PROMPT = load_prompt("declarative", prompt_dir("instructify_checks"))
DECLARATIVE_PROMPT_ID: str = DECLARATIVE_PROMPT.id
DECLARATIVE_PROMPT_VERSION: int = DECLARATIVE_PROMPT.version
DECLARATIVE_SYSTEM: str = DECLARATIVE_PROMPT.system
DECLARATIVE_TEMPLATE: str = DECLARATIVE_PROMPT.template


@dataclass(frozen=True)
class Fact:
    fact_id: str
    image_id: str
    kind: str  # caption | object | qa | ocr
    text: str
    derived_from: str | None = None  # id of the fact this one rewrites (declarative QA)
    note: str | None = None  # how the text was made: "declarative" or "fallback: <reason>"
    model: str | None = None  # model label of the rewrite, when an LLM wrote the text

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Fact:
        values: dict[str, Any] = {k: d.get(k)
                                  for k in ("fact_id", "image_id", "kind", "text", "derived_from", "note", "model")}
        return cls(**values)


def make_fact(image_id: str, kind: str, text: str, **extra: Any) -> Fact:
    if kind not in KINDS:
        raise ValueError(f"unknown fact kind {kind!r}; one of {KINDS}")
    return Fact(content_hash(image_id, kind, text), image_id, kind, text, **extra)


# ---------------------------------------------------------------------------------------------
# Layout
# ---------------------------------------------------------------------------------------------


@dataclass
class _Node:
    label: str
    name: str  # "person", "person 2", or "coins" for a group
    box: tuple[float, float, float, float]
    count: int = 1  # > 1 only for a "many" group
    parent: _Node | None = None
    children: list[_Node] = field(default_factory=list)
    band: str | None = None  # depth band (depth_band), None when the depth is unknown

    @property
    def area(self) -> float:
        x1, y1, x2, y2 = self.box
        return (x2 - x1) * (y2 - y1)

    @property
    def is_group(self) -> bool:
        return self.count > 1

    def sort_key(self) -> tuple:
        return (-round(self.area, 9), self.label, self.box)


def plural(label: str, n: int) -> str:
    """describe.plural, plus consonant + y -> ies ("galaxy" -> "galaxies")."""
    if n != 1 and len(label) > 1 and label.endswith("y") and label[-2] not in "aeiou":
        return label[:-1] + "ies"
    return _describe_plural(label, n)


def _grid(v: float) -> str:
    return f"{round(v / GRID) * GRID:.2f}"


def _clean_box(b: Mapping[str, Any]) -> tuple[str, tuple[float, float, float, float]] | None:
    try:
        label = str(b["label"]).strip()
        x1, y1, x2, y2 = (min(1.0, max(0.0, float(b[k]))) for k in ("x1", "y1", "x2", "y2"))
    except (KeyError, TypeError, ValueError):
        return None
    x1, x2 = sorted((x1, x2))
    y1, y2 = sorted((y1, y2))
    if not label or x2 - x1 <= 0 or y2 - y1 <= 0:
        return None
    return label, (x1, y1, x2, y2)


def depth_band(depth: float | None) -> str | None:
    """"foreground" / "middle ground" / "background" for a relative depth in [0, 1]; None otherwise."""
    if depth is None or not 0 <= depth <= 1:  # NaN fails the range test too
        return None
    return "foreground" if depth < FOREGROUND_BELOW else "middle ground" if depth < BACKGROUND_FROM else "background"


def _clean_depth(b: Mapping[str, Any]) -> float | None:
    """The box's depth when it is a number in [0, 1], else None: a layout never guesses one."""
    depth = b.get("depth")
    if isinstance(depth, bool) or not isinstance(depth, (int, float)) or not 0 <= depth <= 1:
        return None
    return float(depth)


def _inter(a: tuple, b: tuple) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return max(0.0, w) * max(0.0, h)


def _area(a: tuple) -> float:
    return (a[2] - a[0]) * (a[3] - a[1])


def _iou(a: tuple, b: tuple) -> float:
    i = _inter(a, b)
    return i / (_area(a) + _area(b) - i) if i > 0 else 0.0


def _nodes(boxes: Iterable[Mapping[str, Any]]) -> list[_Node]:
    by_label: dict[str, list[tuple[tuple, float | None]]] = defaultdict(list)
    for b in boxes or []:
        cleaned = _clean_box(b)
        if cleaned:
            by_label[cleaned[0]].append((cleaned[1], _clean_depth(b)))
    nodes: list[_Node] = []
    for label in sorted(by_label):
        kept: list[list] = []  # [box, depth]
        # the depth in the key keeps the result independent of input order when equal boxes differ in depth
        for box, depth in sorted(by_label[label], key=lambda t: (t[0], t[1] is None, t[1] or 0.0)):
            twin = next((k for k in kept if _iou(box, k[0]) >= DUPLICATE_IOU), None)
            if twin is None:
                kept.append([box, depth])
            elif twin[1] is None:  # one object boxed twice: a depth from either source counts
                twin[1] = depth
        if len(kept) > MANY:
            members = [k[0] for k in kept]
            union = (min(m[0] for m in members), min(m[1] for m in members),
                     max(m[2] for m in members), max(m[3] for m in members))
            # a group names a band only when every member has a depth in that same band
            bands = {depth_band(d) for _, d in kept}
            nodes.append(_Node(label, plural(label, len(kept)), union, count=len(kept),
                               band=bands.pop() if len(bands) == 1 else None))
            continue
        for i, (box, depth) in enumerate(kept):
            nodes.append(_Node(label, f"{label} {i + 1}" if len(kept) > 1 else label, box, band=depth_band(depth)))
    return nodes


def _build_tree(nodes: list[_Node]) -> list[_Node]:
    """Attach each node to the smallest strictly larger single object holding >= 90% of it."""
    for n in nodes:
        n.children = []
    for child in nodes:
        best = None
        for p in nodes:
            if p is child or p.is_group or p.area <= child.area:
                continue
            if _inter(child.box, p.box) >= CONTAIN_FRACTION * child.area:
                if best is None or (p.area, p.sort_key()) < (best.area, best.sort_key()):
                    best = p
        child.parent = best
        if best is not None:
            best.children.append(child)
    for n in nodes:
        n.children.sort(key=_Node.sort_key)
    return sorted((n for n in nodes if n.parent is None), key=_Node.sort_key)


def gives_region(f: Fact) -> bool:
    """An object fact that states a region (a layout line, or a paragraph that kept its centres)."""
    return f.kind == "object" and _GEOMETRY in f.text


def features(facts: Iterable[Fact]) -> set[str]:
    """What the facts offer a prompt type (`requires`): their kinds, and REGION when an object fact
    gives a region (the counts line "Objects: ..." does not)."""
    facts = list(facts)
    found = {f.kind for f in facts}
    if any(gives_region(f) for f in facts):
        found.add(REGION)
    return found


def _node_line(n: _Node) -> str:
    x1, y1, x2, y2 = n.box
    where = position(*n.box)
    geometry = f"{_GEOMETRY}{_grid((x1 + x2) / 2)}, {_grid((y1 + y2) / 2)}), size {_grid(x2 - x1)} x {_grid(y2 - y1)}"
    inside = f" (inside or on {n.parent.name})" if n.parent is not None else ""
    band = f", in the {n.band}" if n.band else ""  # nothing at all without a depth: the text stays as before
    if n.is_group:
        spread = "spread across the image" if n.area > 0.5 else f"in the {where} area"
        return f"many {n.name}{inside}: {spread}{band}; region {geometry}"
    return f"{n.name}{inside}: {size_word(*n.box)}, {where}{band}; {geometry}"


def _subtree_lines(n: _Node, depth: int) -> list[str]:
    lines = [("  " * depth + "- " if depth else "") + _node_line(n)]
    for c in n.children or []:
        lines.extend(_subtree_lines(c, depth + 1))
    return lines


def _counts_line(nodes: list[_Node]) -> str:
    counts: dict[str, int] = defaultdict(int)
    for n in nodes:
        counts[n.label] += n.count
    order = sorted(counts, key=lambda lb: (-counts[lb], lb))
    parts = [f"many {plural(lb, counts[lb])}" if counts[lb] > MANY else f"{counts[lb]} {plural(lb, counts[lb])}"
             for lb in order]
    return "Objects: " + ", ".join(parts) + "."


LAYOUT_HEADER = "Layout (centre and size as fractions of the image width and height, rounded to 0.05):"


def layout_parts(boxes: Iterable[Mapping[str, Any]]) -> tuple[str, list[str]]:
    """(counts line, one text per top-level subtree); ("", []) when there are no usable boxes."""
    nodes = _nodes(boxes)
    if not nodes:
        return "", []
    roots = _build_tree(nodes)
    return _counts_line(nodes), ["\n".join(_subtree_lines(r, 0)) for r in roots]


def layout_description(boxes: Iterable[Mapping[str, Any]]) -> str:
    """Hierarchical layout: counts per label ("many" above 8), then a containment tree of objects
    with coarse position and size words and centre/size rounded to 0.05; a box with a depth also
    names its depth band ("in the foreground"), a box without one reads as if depth did not exist.

    Same-label boxes with IoU >= 0.9 are merged (one object annotated by two sources). A label with
    more than 8 boxes becomes one "many" region (the count is not shown: large counts from
    detection metadata are rarely exact and invite wrong counting questions).
    """
    counts, subtrees = layout_parts(boxes)
    if not counts:
        return ""
    body = "\n".join("- " + s for s in subtrees)
    return f"{counts}\n{LAYOUT_HEADER}\n{body}"


# ---------------------------------------------------------------------------------------------
# Facts
# ---------------------------------------------------------------------------------------------

_END = (".", "!", "?", '"', "'", ")")


def _sentence(text: str) -> str:
    text = " ".join(str(text).split())
    return text if not text or text.endswith(_END) else text + "."


def qa_text(question: str, answer: str) -> str:
    """The "Q? A." form: a question mark added unless the question already ends a sentence."""
    q = " ".join(str(question).split())
    if q and not q.endswith(_END):
        q += "?"
    return f"{q} {_sentence(answer)}".strip()


def _qa_items(record: Mapping[str, Any]) -> list[tuple[Fact, str, str]]:
    out, seen = [], set()
    for item in record.get("qa") or []:
        q, a = str(item.get("question") or "").strip(), str(item.get("answer") or "").strip()
        if not q or not a:
            continue
        fact = make_fact(record["image_id"], "qa", qa_text(q, a))
        if fact.fact_id not in seen:
            seen.add(fact.fact_id)
            out.append((fact, q, a))
    return out


def facts_for(record: Mapping[str, Any]) -> list[Fact]:
    """All facts of one grouped image record, in a stable order: captions, objects, QA, OCR."""
    image_id = record["image_id"]
    facts: list[Fact] = []
    for c in record.get("captions") or []:
        if str(c).strip():
            facts.append(make_fact(image_id, "caption", _sentence(c)))
    counts, subtrees = layout_parts(record.get("boxes") or [])
    if counts:
        facts.append(make_fact(image_id, "object", counts))
        facts.extend(make_fact(image_id, "object", s) for s in subtrees)
    facts.extend(f for f, _, _ in _qa_items(record))
    for t in record.get("ocr") or []:
        t = " ".join(str(t).split())
        if t:
            facts.append(make_fact(image_id, "ocr", f'Visible text: "{t}".'))
    seen: set[str] = set()
    unique = []
    for f in facts:
        if f.fact_id not in seen:
            seen.add(f.fact_id)
            unique.append(f)
    return unique


def qa_to_declarative_requests(record: Mapping[str, Any], params: SamplingParams | None = None) -> list[LLMRequest]:
    """One request per distinct QA pair (in `facts_for` order), tagged with the QA fact's id."""
    return [
        LLMRequest.chat(
            DECLARATIVE_PROMPT.render_values({"question": q, "answer": a}, strip=False),  # q, a already stripped
            system=DECLARATIVE_PROMPT.system,
            params=params or SamplingParams(temperature=0.0, max_tokens=64),
            tag=fact.fact_id,
        )
        for fact, q, a in _qa_items(record)
    ]


_LABEL = re.compile(r"^\s*(?:statement|answer|fact|declarative(?: statement)?)\s*:\s*", re.IGNORECASE)


def clean_declarative(text: str) -> tuple[str, str | None]:
    """(sentence, None) or ("", reason). Lines of 10 characters or fewer are dropped."""
    lines = []
    for line in (text or "").splitlines():
        line = _LABEL.sub("", line.replace("**", "").strip()).strip().strip('"').strip()
        if len(line) > MIN_DECLARATIVE_CHARS:
            lines.append(line)
    sentence = " ".join(lines)
    if not sentence:
        return "", f"too_short (every line <= {MIN_DECLARATIVE_CHARS} characters)"
    if sentence.endswith("?"):
        return "", "still_a_question"
    return sentence, None


def apply_rewrites(facts: Sequence[Fact], results: Sequence[LLMResult], *, is_target: Callable[[Fact], bool],
                   clean: Callable[[Fact, str], tuple[str, str | None]], note: str) -> list[Fact]:
    """Replace each target fact by the LLM's rewrite of it, or keep it and say why ("fallback: <why>").

    The one rule for every LLM rewrite of a fact (declarative QA, layout paragraphs): the rewrite is
    a new fact (new text, new id) naming the fact it came from; `results` are matched by tag (the
    target fact's id) when tags are present, else by position among the targets; `clean(fact, text)`
    gives (text, None) or ("", reason). Results for other facts are ignored.
    """
    targets = [f for f in facts if is_target(f)]
    by_tag = {r.tag: r for r in results if r.tag is not None}
    if not by_tag and len(results) != len(targets):
        raise ValueError(f"{len(results)} results for {len(targets)} facts to rewrite and no tags to match them")
    positional = {f.fact_id: results[i] for i, f in enumerate(targets)} if not by_tag else {}
    out = []
    for f in facts:
        if not is_target(f):
            out.append(f)
            continue
        res = by_tag.get(f.fact_id) or positional.get(f.fact_id)
        model = res.model.label() if res is not None and res.model is not None else None
        if res is None:
            out.append(replace(f, note="fallback: no_result"))
        elif res.status != OK:
            out.append(replace(f, note=f"fallback: llm_{res.status}", model=model))
        else:
            text, why = clean(f, res.text)
            out.append(replace(f, note=f"fallback: {why}", model=model) if why else
                       make_fact(f.image_id, f.kind, text, derived_from=f.fact_id, note=note, model=model))
    seen: set[str] = set()
    unique = []
    for f in out:  # a rewrite may repeat another fact word for word
        if f.fact_id not in seen:
            seen.add(f.fact_id)
            unique.append(f)
    return unique


def is_qa_source(f: Fact) -> bool:
    return f.kind == "qa" and f.derived_from is None


def apply_declarative(facts: Sequence[Fact], results: Sequence[LLMResult]) -> list[Fact]:
    """Replace each QA fact by its declarative rewrite (`qa_to_declarative_requests`), or keep the
    "Q? A." text and say why."""
    return apply_rewrites(facts, results, is_target=is_qa_source, clean=lambda _f, text: clean_declarative(text),
                          note="declarative")
