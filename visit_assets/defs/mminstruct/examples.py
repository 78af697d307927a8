"""MM-Instruct's stage 1 of the answers: instruction_examples, the teacher model's answers that
stage 2 (generated_conversations) shows as in-context examples."""

from dataclasses import replace

import dagster as dg
import numpy as np
import polars as pl

from ...lib.code_version import code_version
from ...lib.frames import frame_fingerprint, rows_frame
from ...lib.ids import content_hash
from ...lib.metadata.pipeline import lineage_columns
from ...lib.mminstruct import examples as examples_mod
from ...lib.mminstruct import match as match_mod
from ...lib.storage import Parent
from ..k8s import GPU_OP_TAGS
from ..llm.resources import LLMResource
from ..llm.retries import LLM_RETRY_POLICY, retry_only_transient
from ..metadata import counts_by, frame_metadata, preview, stored
from ..models.resources import ClipResource, EmbedderResource
from ..partitions import dataset_partitions, from_dataset
from ..waves import REGENERATED
from .assets import instruction_vectors, merged_instructions

EXAMPLES_VERSION = code_version(examples_mod, match_mod, files=("prompts/mminstruct/example_answer.yaml",))
TEACHER = "teacher"


class InstructionExamplesConfig(dg.Config):
    per_instruction: int = examples_mod.EXAMPLES_PER_INSTRUCTION  # images answered per merged instruction
    seed: int = 0
    max_tokens: int = examples_mod.ANSWER_PARAMS.max_tokens


@dg.asset(partitions_def=dataset_partitions, code_version=EXAMPLES_VERSION, group_name="mminstruct",
          ins={"image_embeddings": dg.AssetIn(partition_mapping=from_dataset),
               "image_descriptions": dg.AssetIn(partition_mapping=from_dataset)},
          pool="gpu", op_tags=GPU_OP_TAGS,  # the instructions are encoded in the step (CLIP text or the embedder)
          tags=REGENERATED, kinds={"parquet"}, retry_policy=LLM_RETRY_POLICY)
@retry_only_transient
def instruction_examples(context: dg.AssetExecutionContext, config: InstructionExamplesConfig, llm: LLMResource,
                         clip: ClipResource, embedder: EmbedderResource, image_embeddings: Parent,
                         image_descriptions: Parent, clustered_instructions: Parent):
    """Stage 1 of MM-Instruct's answers: the teacher model (the `teacher` LLM role, by default the
    judge's stronger model) answers each merged instruction for the images most similar to it; the
    answers that pass the answer filters are that instruction's in-context examples in stage 2."""
    dataset = context.partition_key
    merged = merged_instructions(clustered_instructions)
    pairs = _best_pairs(image_embeddings, image_descriptions, merged, config.per_instruction, clip, embedder)
    teacher = llm.role(TEACHER)
    params = replace(examples_mod.ANSWER_PARAMS, max_tokens=config.max_tokens)
    jobs = examples_mod.example_requests(pairs, config.seed, params=params)
    results, llm_meta = teacher.run_batch(context, [j.request for j in jobs], label="examples") if jobs else ([], {})
    rows = [examples_mod.example_row(j, r) for j, r in zip(jobs, results, strict=True)]
    dataset_version = clustered_instructions.pointer["dataset_version"]
    frame = rows_frame(rows, lineage_columns(dataset, dataset_version, EXAMPLES_VERSION))
    # From the examples themselves: an edit that leaves every example as it was (most edits of one
    # image) changes nothing below, so the conversations of other shards stay as they are.
    version = content_hash(frame_fingerprint(frame), EXAMPLES_VERSION, config.model_dump(),
                           teacher.get_client().identity.as_dict())
    kept = frame.filter(pl.col("kept")) if rows else frame
    return stored(frame, version, dataset_version=dataset_version, code_version=EXAMPLES_VERSION, metadata={
        **frame_metadata(frame), "kept": kept.height, "instructions": merged.height,
        "instructions_with_two_or_more": int((kept.group_by("instruction_id").len()["len"] >= 2).sum()) if rows else 0,
        "by_filter_reason": counts_by(frame.filter(~pl.col("kept")), "filter_reason") if rows else {},
        "preview": preview(frame, ["instruction", "image_id", "answer", "kept"]), **llm_meta})


def _shards(parent: Parent) -> list[Parent]:
    """Each shard of a dataset-wide parent on its own: read one at a time, never all at once."""
    return [replace(parent, shards=(s,)) for s in parent.shards]


def _best_pairs(embeddings: Parent, descriptions: Parent, merged: pl.DataFrame, per_instruction: int,
                clip: ClipResource, embedder: EmbedderResource) -> list[dict]:
    """(instruction, image) pairs to answer: the `per_instruction` images most similar to each
    instruction, read shard by shard, with the images' descriptions."""
    if not merged.height:
        return []
    best = examples_mod.BestImages(merged.height, per_instruction)
    vectors: dict[str, np.ndarray] = {}  # per embedding space (CLIP or the text fallback)
    for shard in _shards(embeddings):
        images = shard.read().filter(pl.col("error").is_null())
        if not images.height:
            continue
        space = images["embedding_space"][0]
        if space not in vectors:
            vectors[space] = instruction_vectors(space, merged, clip, embedder)
        best.add(images["image_id"].to_list(),
                 match_mod.similarity(np.stack(list(images["embedding"].to_numpy())), vectors[space]))
    chosen = {i: best.best(i) for i in range(merged.height)}
    wanted = {image_id for picks in chosen.values() for image_id, _ in picks}
    described: dict = {}
    for shard in _shards(descriptions):
        d = shard.read().select("image_id", "description")
        described.update(zip(*d.filter(pl.col("image_id").is_in(list(wanted))).get_columns(), strict=True))
    ids, texts = merged["instruction_id"].to_list(), merged["instruction"].to_list()
    return [{"instruction_id": ids[i], "instruction": texts[i], "image_id": image_id,
             "description": described[image_id], "similarity": sim}
            for i, picks in chosen.items() for image_id, sim in picks if image_id in described]
