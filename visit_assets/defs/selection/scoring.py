"""The model calls behind quality_scores and pairwise_evaluation (resources in, columns out)."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import dagster as dg
import numpy as np
import polars as pl

from ...lib.frames import embedding_matrix
from ...lib.llm import LLMRequest, SamplingParams
from ...lib.models.identity import RANDOM_INIT
from ...lib.selection import evaluation as evaluation_mod
from ...lib.selection import pairwise as pairwise_mod
from ...lib.selection import quality as quality_mod
from ...lib.selection import scores as scores_mod
from ...lib.storage import Parent
from ..llm.resources import RoleLLM
from ..llm.rounds import LLMRounds
from ..models.assets import CLIP_IMAGE
from ..models.resources import ClipResource, EmbedderResource, RewardResource
from ..resources import StoreResource

if TYPE_CHECKING:  # assets.py imports this module
    from .assets import QualityConfig

CONVERSATION_COLUMNS = ["conversation_id", "image_id", "image_key", "recipe", "turns"]


def current_dataset_version(store: StoreResource, dataset: str) -> str | None:
    """The dataset version source_records holds now. Read outside the graph's edges: source_records is
    not an input of the assets asking (it would be a new edge), and a parent's own dataset_version
    may be an older one."""
    pointer = store.parent("source_records", dataset).current()
    return pointer.get("dataset_version") if pointer else None


def conversations(filtered_conversations: Parent, imported_conversations: Parent) -> pl.DataFrame:
    """Filtered conversations of every shard plus the imported ones, with their texts."""
    frames = []
    made = filtered_conversations.made()  # no shard: imported only
    generated = made.read() if made.shards else pl.DataFrame()
    if "conversation_id" in generated.columns:
        frames.append(generated.drop("dataset", "code_version", "filter_version", strict=False)
                      .rename({"dataset_version": "source_dataset_version"}))
    if imported_conversations.current() is not None:
        imported = imported_conversations.read()
        frames.append(imported.drop("dataset", "code_version").rename({"dataset_version": "source_dataset_version"}))
    frame = pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame(
        schema={c: pl.String for c in CONVERSATION_COLUMNS[:-1]} | {"turns": pl.List(pl.Struct(
            {"from": pl.String, "value": pl.String}))})
    return quality_mod.with_texts(frame.sort("conversation_id"))


CLIP_CHUNK = 8192  # answers encoded and scored at a time: the vectors never exist for every conversation at once


def _clip(context, frame, image_embeddings: Parent, clip, embedder,
          max_sentences) -> tuple[np.ndarray | None, str, str]:
    """100 x cosine(image vector, answer vector) in the image embeddings' own space, or None."""
    emb = image_embeddings.read()
    if not frame.height or not emb.height:
        return None, "none", "no image embeddings"
    spaces = set(emb["embedding_space"])
    if len(spaces) != 1:
        raise ValueError(f"image_embeddings of {image_embeddings.dataset} mix embedding spaces {sorted(spaces)}: "
                         "re-materialize them")
    space = spaces.pop()
    if space == CLIP_IMAGE:
        encoder = clip.get()
        if encoder.identity.weights == RANDOM_INIT:  # honest scores only: random weights never score
            context.log.warning("CLIP has random weights: the CLIP score is left absent")
            return None, "clip-image", f"{encoder.identity.label()} (random weights: not scored)"
        encode, model = (lambda answers: encoder.encode_long_texts(answers, max_sentences)), encoder.identity.label()
    else:  # no CLIP weights: the image is its description's embedding, so compare answer text to it
        text_model = embedder.get()
        encode, model = text_model.encode, f"{text_model.identity.label()} (description-answer similarity)"
    images = _ImageVectors(frame, emb)
    scores = [scores_mod.clip_score(images.rows(start, start + CLIP_CHUNK),
                                    encode(frame["answer"].slice(start, CLIP_CHUNK).to_list()))
              for start in range(0, frame.height, CLIP_CHUNK)]
    return np.concatenate(scores), space, model


class _ImageVectors:
    """Each conversation's image vector (NaN where its image has none), a slice of rows at a time:
    one float32 matrix per image, never one per conversation (those are several per image)."""

    def __init__(self, frame: pl.DataFrame, emb: pl.DataFrame):
        emb = emb.unique("image_id", keep="last", maintain_order=True)
        self.matrix = embedding_matrix(emb["embedding"])
        self.index = frame.select("image_id").join(emb.select("image_id").with_row_index("_row"), on="image_id",
                                                   how="left", maintain_order="left")["_row"].fill_null(-1).to_numpy()

    def rows(self, start: int, stop: int) -> np.ndarray:
        index = self.index[start:stop]
        out = np.full((len(index), self.matrix.shape[1]), np.nan, dtype=np.float32)
        out[index >= 0] = self.matrix[index[index >= 0]]
        return out


# Judge requests built, sent and parsed at a time: a COCO-size dataset's prompts are never all in
# memory. Up to this many rows it is one batch, as it always was; above, the chunks are reported as
# one (LLMRounds), with two differences: a request repeated in a later chunk counts as a cache hit
# (not as deduplicated), and a budget stop's failure metadata covers the chunk it stopped in.
JUDGE_CHUNK = 20_000


def _judge(context, frame, config, llm) -> tuple[np.ndarray | None, list[pl.Series | pl.Expr], dict, dict]:
    if not config.judge or not frame.height:
        empty: list[pl.Series | pl.Expr] = [pl.Series("judge_status", [None] * frame.height, dtype=pl.String)]
        return None, empty, {}, {}
    params = SamplingParams(temperature=0.0, max_tokens=config.judge_max_tokens)
    imported = frame["imported_judge"] if "imported_judge" in frame.columns else pl.repeat(None, frame.height, eager=True)
    todo = np.flatnonzero(imported.is_null().to_numpy())
    values = np.full(frame.height, np.nan)
    status = np.full(frame.height, "imported", dtype=object)
    replies, keys = np.full(frame.height, None, dtype=object), np.full(frame.height, None, dtype=object)
    chunks = LLMRounds(context, llm, "judge", noun="chunk")
    meta: dict = {}
    for start in range(0, len(todo), JUDGE_CHUNK):
        rows = todo[start:start + JUDGE_CHUNK]
        texts = frame.select("instruction", "answer")[rows].iter_rows()
        requests = [LLMRequest(tuple(scores_mod.judge_request_messages(q, a)), params, tag=int(i))
                    for i, (q, a) in zip(rows, texts, strict=True)]
        if len(todo) <= JUDGE_CHUNK:
            results, meta = llm.run_batch(context, requests, label="judge")
        else:
            results = chunks(requests)
        for i, result in zip(rows, results, strict=True):
            score, parsed = scores_mod.parse_judge(result.text) if result.status != "error" else (None, "llm-error")
            values[i], status[i], replies[i], keys[i] = np.nan if score is None else score, parsed, result.text, \
                result.cache_key
    columns: list[pl.Series | pl.Expr] = [pl.Series("judge_status", status.tolist(), dtype=pl.String),
               pl.Series("judge_reply", replies.tolist(), dtype=pl.String),
               pl.Series("judge_cache_key", keys.tolist(), dtype=pl.String),
               pl.lit(f"{scores_mod.JUDGE_PROMPT_ID}@{scores_mod.JUDGE_PROMPT_VERSION}").alias("judge_prompt")]
    return values, columns, chunks.metadata() if len(todo) > JUDGE_CHUNK else meta, dict(Counter(status.tolist()))


@dataclass(frozen=True)
class Scorers:
    """The models quality_scores asks: the LLM judge, CLIP (or, without CLIP weights, the text
    embedder) for the CLIP score, and the reward model."""

    judge: RoleLLM
    clip: ClipResource
    embedder: EmbedderResource
    reward: RewardResource


@dataclass(frozen=True)
class Scores:
    """score_all's result, one entry per score name (clip, length, reward, judge)."""

    raw: dict[str, np.ndarray]  # per row: the imported score, else the computed one (NaN: absent)
    models: dict[str, list[str | None]]  # per row: the model that made that value
    judge_columns: list[pl.Series | pl.Expr]  # judge_status, _reply, _cache_key, _prompt
    info: dict[str, Any]  # run metadata: models, clip_source, judge_status, llm


def score_all(context: dg.AssetExecutionContext, config: QualityConfig, image_embeddings: Parent,
              frame: pl.DataFrame, scorers: Scorers) -> Scores:
    """Every score of every conversation in `frame` (rows in frame's order), for `quality_scores`."""
    llm = scorers.judge
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="judge") as pool:
        judged = pool.submit(_judge, context, frame, config, llm)  # the LLM judges while the models below compute
        clip_values, space, clip_model = _clip(context, frame, image_embeddings, scorers.clip, scorers.embedder,
                                               config.clip_max_sentences)
        rm = scorers.reward.get()
        reward_values = rm.score(frame["instruction"].to_list(), frame["answer"].to_list()) if frame.height else None
        judge_values, judge_columns, llm_meta, judge_status = judged.result()
    computed = {
        "clip": (clip_values, clip_model),
        "length": (scores_mod.length_score(frame["answer"].to_list()), "characters of the assistant turns"),
        "reward": (None if reward_values is None else reward_values.astype(np.float64), rm.identity.label()),
        "judge": (judge_values, llm.get_client().identity.label()),
    }
    raw, models = {}, {}
    for name, (values, model) in computed.items():
        raw[name], models[name] = quality_mod.merge_score(frame, name, values, model)
    info: dict[str, Any] = {"models": {n: m for n, (_, m) in computed.items()}, "clip_source": space,
            "judge_status": judge_status, "llm": llm_meta}
    if reward_values is None:
        info["models"]["reward"] = "none configured (score absent; weights renormalised)"
    return Scores(raw, models, judge_columns, info)


def evaluate(context, config, quality_scores: Parent, selected_subset: Parent, image_descriptions: Parent, llm,
             dataset_version: str | None) -> tuple[pl.DataFrame, dict, int, dict]:
    """Pairs, both orders judged, Win / Tie / Lose per pair."""
    scored = quality_scores.read()
    selected = set(selected_subset.read()["conversation_id"])
    scored = scored.select("conversation_id", "image_id", "image_key", "recipe", "instruction", "answer")
    chosen = pl.col("conversation_id").is_in(list(selected))
    candidates = scored.filter(chosen).to_dicts()
    # pairs are made within an image: only the candidates' images' rows can be baselines (no dict per row)
    pool = scored.filter(~chosen & pl.col("image_id").is_in([r["image_id"] for r in candidates])
                         & ((pl.lit(config.baseline == "random")) | (pl.col("recipe") == "imported"))).to_dicts()
    pairs, unpaired = evaluation_mod.pair_up(candidates, pool, config.seed)
    described = image_descriptions.read()
    context_of = dict(zip(described["image_id"], described["description"], strict=True)) if described.height else {}
    params = SamplingParams(temperature=0.0, max_tokens=config.max_tokens)
    requests = [LLMRequest(tuple(p.messages(first, context_of.get(p.candidate["image_id"]))), params)
                for p in pairs for first in (True, False)]
    results, meta = llm.run_batch(context, requests, label="pairwise judge") if requests else ([], {})
    verdicts = [pairwise_mod.parse_preference(r.text) if r.status != "error" else None for r in results]
    ab, ba = verdicts[0::2], verdicts[1::2]
    outcomes, counts = pairwise_mod.win_tie_lose(ab, ba, config.rule)
    frame = pl.DataFrame({
        "candidate_id": [p.candidate["conversation_id"] for p in pairs],
        "baseline_id": [p.baseline["conversation_id"] for p in pairs],
        "image_id": [p.candidate["image_id"] for p in pairs], "image_key": [p.candidate["image_key"] for p in pairs],
        "prompt_id": [p.prompt_id for p in pairs], "verdict_ab": ab, "verdict_ba": ba, "outcome": outcomes,
        "reply_ab": [r.text for r in results[0::2]], "reply_ba": [r.text for r in results[1::2]],
        "cache_key_ab": [r.cache_key for r in results[0::2]], "cache_key_ba": [r.cache_key for r in results[1::2]],
    }, schema_overrides={"verdict_ab": pl.String, "verdict_ba": pl.String, "reply_ab": pl.String,
                         "reply_ba": pl.String, "cache_key_ab": pl.String, "cache_key_ba": pl.String,
                         "candidate_id": pl.String, "baseline_id": pl.String, "image_id": pl.String,
                         "image_key": pl.String, "prompt_id": pl.String, "outcome": pl.String})
    shown = {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in counts.items()}
    return frame.with_columns(pl.lit(config.rule).alias("rule"), pl.lit(config.baseline).alias("baseline"),
                              pl.lit(llm.get_client().identity.label()).alias("judge_model"),
                              pl.lit(dataset_version).alias("dataset_version")), \
        shown, len(unpaired), meta
