"""A rehearsal of a real run: the whole graph on the embedded sample, every LLM request answered
by the stand-in (a TEST INSTRUMENT imitating a competent model, with planted faults), then the
product's outputs scored against the stand-in's log.

Everything lands under <VISIT_HOME>/rehearsal (its own store, LLM cache, Dagster instance and
exports), so rehearsal rows never mix with real ones; they name the stand-in as their model, with
weights `stand-in` (not real). `visit-assets rehearse` runs it; bench/standin_rehearsal.py keeps
the raw report.
"""

from __future__ import annotations

import json
import math
import shutil
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import settings
from .lib.standin import STAND_IN_MODEL, role_model
from .lib.standin.faults import FaultPlan

REPO = Path(__file__).resolve().parents[1]
MARKER = ".visit-rehearsal"  # only a folder holding it is ever deleted by a rehearsal

# Faults planted by default: enough of each to measure every check on 16 images.
DEFAULT_FAULTS = {"unsupported": 0.12, "truncated": 0.06, "repetition": 0.06, "refusal": 0.05, "unparseable": 0.05,
                  "empty": 0.04, "source_leak": 0.06, "too_short": 0.06, "server_error": 0.05, "slow": 0.01}
# The reference's sampling knobs (10 iterations, 1000 tokens): the stand-in is fast, the laptop
# shortcuts of run-sample are not needed.
# The layout pass is on: a competent model is what it needs, and the stand-in plays one.
OP_CONFIG: dict[str, dict] = {"selected_subset": {"alpha_fraction": 0.5}, "image_facts": {"layout_text": "paragraphs"}}
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


# Which product role (LLMResource.role) sends each stand-in prompt role; the rest are the generator's.
ROLE_OF_PROMPT = {"verify": "checker", "fit": "checker", "judge": "judge", "pairwise": "pairwise",
                  "pairwise_example": "pairwise", "example_answer": "teacher"}
OTHER_ROLES = ("checker", "judge", "pairwise", "teacher")


def _rehearsal_env(home: Path, base_url: str) -> dict[str, str]:
    """The stand-in plays every role under the role's own name, as separate models would be; every
    other LLM variable of the caller's shell is blanked (empty counts as unset), so nothing of a
    real deployment (its endpoints, keys, model names) takes part."""
    from .defs.llm.resources import role_env_name, role_env_names

    env = {name: "" for name in role_env_names()}
    env.update({"VISIT_LLM_API_KEY_ENV": "", "VISIT_LLM_MODEL_PATH": ""})
    for role in OTHER_ROLES:
        env.update({role_env_name(role, "backend"): "openai", role_env_name(role, "base_urls"): base_url,
                    role_env_name(role, "served_model"): role_model(role)})
    return {**env, "VISIT_HOME": str(home), "VISIT_STORE": str(home / "store"), "DAGSTER_HOME": str(home / "dagster_home"),
            "VISIT_DATASETS": str(home / "datasets"), "VISIT_LLM_BACKEND": "openai", "VISIT_LLM_BASE_URLS": base_url,
            "VISIT_LLM_SERVED_MODEL": STAND_IN_MODEL, "VISIT_LLM_CACHE": str(home / "store" / "llm_cache.sqlite"),
            "VISIT_LLM_CONCURRENCY": "4"}


def every_type_weights() -> dict[str, float]:
    """Prompt weights that try every type: equal, except that a type which needs a fact kind (an
    OCR question needs visible text, 2 of the sample's 15 images) weighs as much as all the types
    without such a need together, so it is drawn often whenever it can be."""
    from .lib.instructify.registry import load_registry

    prompts = load_registry().prompts
    plain = sum(1 for p in prompts if not p.requires)
    return {p.id: float(plain) if p.requires else 1.0 for p in prompts}


def run(home: Path | None = None, plan: FaultPlan | None = None, *, generation: dict | None = None,
        fresh: bool = True, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the sample through the stand-in and return the report (also written to home/report.json).

    `generation`: config of generated_conversations (e.g. {"prompt_weights": {...}})."""
    import dagster as dg

    from .lib.environment import environment
    from .lib.standin.server import StandInServer

    home = Path(home or settings.home() / "rehearsal").resolve()
    if fresh and home.exists():
        if any(home.iterdir()) and not (home / MARKER).exists():
            raise ValueError(f"{home} exists and is not a rehearsal folder (no {MARKER}): choose another --home")
        shutil.rmtree(home)
    home.mkdir(parents=True, exist_ok=True)
    (home / MARKER).write_text("made by visit-assets rehearse; deleted and remade by the next rehearsal here\n")
    plan = plan or FaultPlan(DEFAULT_FAULTS)
    with StandInServer(plan, log_path=home / "stand_in_log.jsonl") as server, \
            environment(_rehearsal_env(home, server.base_url)):
        from .definitions import defs
        from .runner import run_dataset

        (home / "dagster_home").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(REPO / "dagster.yaml", home / "dagster_home" / "dagster.yaml")
        shutil.copytree(settings.sample_dataset(), home / "datasets" / "sample")
        with dg.DagsterInstance.get() as instance:
            op_config = {**OP_CONFIG, **({"generated_conversations": generation} if generation else {})}
            run_dataset(defs, "sample", instance, run_config=QUIET, op_config=op_config, log=log)
        report = build_report(home, server.log, server.answered, plan, generation)
    (home / "report.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    return report


def _rows(store, asset: str, dataset: str, shards: list[int] | None) -> list[dict]:
    frame = store.read_shards(asset, dataset, shards) if shards is not None else store.read(asset, dataset)
    return frame.to_dicts()


def _facts_digests(facts) -> dict[str, int]:
    """Per image, the digest of its numbered facts as the verification prompt shows them."""
    from .lib.instructify.registry import format_facts
    from .lib.standin.phrasing import digest

    return {iid: digest(format_facts(group["text"].to_list()))
            for (iid,), group in facts.group_by("image_id", maintain_order=True)}


def _draw_odds(facts, attempts: list[dict], registry) -> list[dict[str, float]]:
    """For each Instructify attempt, each prompt type's chance of being drawn: its weight among the
    types the image's remaining facts allow (a type that requires OCR facts is not drawn without them)."""
    from .lib.instructify.facts import Fact, features

    facts_of = {r["fact_id"]: Fact.from_dict(r) for r in facts.iter_rows(named=True)}
    remaining = {iid: set(group["fact_id"]) for (iid,), group in facts.group_by("image_id")}
    odds = []
    for a in sorted(attempts, key=lambda a: (a["image_id"], a["iteration"])):
        if a.get("recipe") != "instructify" or a["status"] == "stopped":
            continue
        left = remaining.setdefault(a["image_id"], set())
        drawable = registry.drawable(features(facts_of[f] for f in left))
        total = sum(p.weight for p in drawable)
        odds.append({p.id: p.weight / total for p in drawable})
        left -= set(a.get("consumed_fact_ids") or [])
    return odds


def _share_z(tried: Counter, odds: list[dict[str, float]], ids: list[str]) -> dict[str, float]:
    """Per type, (attempts - expected) / standard deviation, a sum of per-attempt Bernoulli draws."""
    out = {}
    for k in ids:
        ps = [o.get(k, 0.0) for o in odds]
        var = sum(p * (1 - p) for p in ps)
        if var > 0:
            out[k] = round((tried[k] - sum(ps)) / math.sqrt(var), 2)
    return out


def build_report(home: Path, log: list[dict], answered: Counter, plan: FaultPlan,
                 generation: dict | None = None) -> dict[str, Any]:
    from .lib.instructify.export import read_export
    from .lib.instructify.registry import load_registry
    from .lib.instructify.sampling import llm_seed
    from .lib.standin import scoring
    from .lib.storage import ParquetStore

    store = ParquetStore(home / "store")
    shards = list(range(settings.n_shards()))
    attempts = _rows(store, "conversation_attempts", "sample", shards)
    facts = store.read_shards("image_facts", "sample", shards)  # read once: the digests and the draw odds
    generated = _rows(store, "generated_conversations", "sample", shards)
    kept = _rows(store, "filtered_conversations", "sample", shards)
    rejects = _rows(store, "conversation_rejects", "sample", shards)
    seed = (generation or {}).get("seed", 0)  # GenerationConfig.seed
    ins = [c for c in kept if c["recipe"] == "instructify"]
    registry = load_registry(weights=(generation or {}).get("prompt_weights") or None,
                             profile=(generation or {}).get("prompt_profile"))
    probabilities = registry.probabilities()
    tried = Counter(a["prompt_id"] for a in attempts if a.get("recipe") == "instructify" and a["status"] != "stopped")
    turns = Counter(len(c["turns"]) // 2 for c in ins)
    exports = sorted((home / "exports" / "sample").glob("*/manifest.json"), key=lambda p: p.stat().st_mtime)
    items, manifest = read_export(exports[-1].parent) if exports else ([], {})
    pairwise = _rows(store, "pairwise_evaluation", "sample", None)
    return {
        "model": STAND_IN_MODEL, "faults_planted_at": dict(plan.rates), "fault_seed": plan.seed,
        "planted": scoring.planted(log),
        "transport": scoring.transport_report(log, answered),
        "instructify": {
            "attempts_by_prompt": dict(sorted(tried.items())),
            "registry_share": {k: round(v, 4) for k, v in sorted(probabilities.items())},
            "attempt_share_z": _share_z(tried, _draw_odds(facts, attempts, registry), sorted(probabilities)),
            "accepted_by_prompt": dict(sorted(Counter(c["prompt_id"] for c in ins).items())),
            "pairs_per_conversation": dict(sorted(turns.items())),
            "image_token_only_first": sum(1 for c in ins if _image_token_ok(c["turns"])),
            "conversations": len(ins),
            **scoring.instructify_report(log, attempts, generated, kept, rejects, lambda i, it: llm_seed(i, seed, it),
                                        _facts_digests(facts)),
        },
        "mminstruct": {
            "generated_instructions_ok": sum(1 for r in _rows(store, "generated_instructions", "sample", shards)
                                             if r["status"] == "ok"),
            "merged_ok": sum(1 for r in _rows(store, "clustered_instructions", "sample", None) if r["status"] == "ok"),
            "described_images": len(_rows(store, "image_descriptions", "sample", shards)),
            "matches": len(_rows(store, "instruction_matches", "sample", shards)),
            "answers": sum(1 for c in generated if c["recipe"] == "mm-instruct"),
            "kept": sum(1 for c in kept if c["recipe"] == "mm-instruct"),
            **scoring.mminstruct_report(log, attempts, generated, kept, rejects),
            **_stage_one_use(log, _rows(store, "instruction_examples", "sample", None), generated),
        },
        "layout_paragraphs": _layout_report(log, facts),
        "rejects_by_reason": dict(sorted(Counter(r.get("reason") for r in rejects).items())),
        "selection": {"selected": len(_rows(store, "selected_subset", "sample", None)),
                      "pairwise_rows": len(pairwise),
                      "pairwise_outcomes": dict(sorted(Counter(str(r["outcome"]) for r in pairwise).items()))},
        "export": {"items": len(items), "folder": str(exports[-1].parent) if exports else None,
                   "models": manifest.get("models"), "not_real_models": manifest.get("not_real_models")},
        "models_by_role": _models_by_role(store, shards, log, ins, kept, pairwise),
    }


def _layout_report(log: list[dict], facts) -> dict[str, Any]:
    """The layout pass: how many of the stand-in's clean and planted paragraphs became facts (all the
    clean ones, none of the planted ones, when the check works), and why the others fell back."""
    kept = {" ".join(t.split()) for t in facts.filter(facts["note"] == "layout paragraph")["text"]}
    answered = {e["key"]: e for e in log if e.get("role") == "layout" and e.get("status") == 200}
    planted = [e for e in answered.values() if e.get("fault")]
    clean = [e for e in answered.values() if not e.get("fault")]

    def became_facts(entries: list[dict]) -> int:
        return sum(" ".join(e["reply"].split()) in kept for e in entries)

    fallbacks = Counter(n for k, n in zip(facts["kind"], facts["note"], strict=True)
                        if k == "object" and n and n.startswith("fallback"))
    return {"requests": len(answered), "clean": len(clean), "clean_kept": became_facts(clean),
            "planted": dict(sorted(Counter(e["fault"] for e in planted).items())),
            "planted_kept": became_facts(planted), "fallbacks": dict(sorted(fallbacks.items()))}


def _stage_one_use(log: list[dict], examples: list[dict], generated: list[dict]) -> dict[str, Any]:
    """The teacher's examples, and the answers that showed them: an answer shows its instruction's
    own examples exactly when at least two were kept for other images than its own."""
    kept = [e for e in examples if e["kept"]]
    answers = [c for c in generated if c["recipe"] == "mm-instruct"]
    others = {(c["image_id"], c["instruction_id"]): sum(1 for e in kept if e["instruction_id"] == c["instruction_id"]
                                                        and e["image_id"] != c["image_id"]) for c in answers}
    kept_ids = {e["example_id"] for e in kept}
    from .lib.standin import scoring

    return {"examples": scoring.examples_report(log, examples),
            "answers_with_instruction_examples": sum(1 for c in answers if set(c["example_ids"]) <= kept_ids),
            "answers_that_should_show_them": sum(1 for n in others.values() if n >= 2)}


def _models_by_role(store, shards: list[int], log: list[dict], instructify: list[dict], kept: list[dict],
                    pairwise: list[dict]) -> dict[str, dict[str, list[str]]]:
    """Which model answered each role's requests (the stand-in's log), and which model each role's
    rows name: every role must show its own model and nothing else."""
    served: dict[str, set[str]] = {}
    for entry in log:
        if entry.get("model"):
            served.setdefault(ROLE_OF_PROMPT.get(entry["role"], "generator"), set()).add(entry["model"])
    scores = _rows(store, "quality_scores", "sample", None)
    named = {
        "generator": {c["model"] for c in instructify},
        "checker": {m for c in instructify for m in c["verifier_models"]}
        | {c["fit_model"] for c in kept if c.get("fit_model")},
        "judge": {r["judge_model"] for r in scores
                  if r.get("judge_raw") is not None and r.get("judge_status") != "imported"},
        "pairwise": {r["judge_model"] for r in pairwise},
        "teacher": {r["model"] for r in _rows(store, "instruction_examples", "sample", None)},
    }
    return {"requests": {k: sorted(v) for k, v in sorted(served.items())},
            "rows": {k: sorted(m.split("@", 1)[0] for m in v) for k, v in named.items()}}


def _image_token_ok(turns: list[dict]) -> bool:
    return turns[0]["value"].count("<image>") == 1 and all("<image>" not in t["value"] for t in turns[1:])


def summary(report: dict[str, Any], home: Path) -> str:
    """What a user reads after `visit-assets rehearse`: the mix, each check, where the rows are."""
    ins, mm, lp = report["instructify"], report["mminstruct"], report["layout_paragraphs"]
    checks = {**{f"instructify: {k}": v for k, v in ins["checks"].items()},
              **{f"mm-instruct: {k}": v for k, v in mm["checks"].items()},
              **{f"mm-instruct examples: {k}": v for k, v in mm["examples"]["checks"].items()}}
    lines = ["", f"Rehearsal with the stand-in ({report['model']}: a test instrument, its rows are marked not real)",
             f"Instructify conversations accepted by prompt type: {ins['accepted_by_prompt']}",
             f"MM-Instruct: {mm['generated_instructions_ok']} instructions, {mm['merged_ok']} merged, "
             f"{mm['matches']} matched, "
             f"{mm['examples']['kept']} stage-1 examples kept, {mm['answers']} answers "
             f"({mm['answers_with_instruction_examples']} shown stage-1 examples), {mm['kept']} kept",
             f"Layout paragraphs: {lp['clean_kept']} of {lp['clean']} clean kept, {lp['planted_kept']} of "
             f"{sum(lp['planted'].values())} planted kept; fallbacks {lp['fallbacks'] or 'none'}",
             f"Planted faults: {report['planted']}", "", f"{'check':62} {'tp':>4} {'fp':>4} {'fn':>4}  precision  recall"]
    lines += [f"{n:62} {c['tp']:>4} {c['fp']:>4} {c['fn']:>4}  {str(c['precision']):>9}  {str(c['recall']):>6}"
              for n, c in checks.items()]
    lines += ["", f"Clean replies not kept: {ins['clean_replies_not_kept'] or 'none'} (Instructify), "
              f"{mm['clean_answers_not_kept'] or 'none'} (MM-Instruct)",
              f"Answered requests sent twice: {report['transport']['answered_more_than_once']}",
              f"Export: {report['export']['folder']} ({report['export']['items']} conversations)",
              f"Report: {home / 'report.json'}; stand-in log: {home / 'stand_in_log.jsonl'}; store: {home / 'store'}"]
    return "\n".join(lines)
