"""MM-Instruct's description stage: vlm_descriptions, images described by a vision-language model
where their metadata is thin (lib/mminstruct/describe.py); image_descriptions uses them."""

from dataclasses import replace

import dagster as dg
import polars as pl

from ...lib.code_version import code_version
from ...lib.frames import rows_frame
from ...lib.ids import content_hash
from ...lib.llm.types import ImageInput
from ...lib.metadata.describe import fact_count
from ...lib.metadata.image_store import read_bytes
from ...lib.metadata.paths import UnsafePath
from ...lib.metadata.pipeline import lineage_columns
from ...lib.mminstruct import describe as describe_mod
from ...lib.storage import Parent
from ..llm.pools import LLM, llm_pool
from ..llm.resources import LLMResource
from ..llm.retries import LLM_RETRY_POLICY, retry_only_transient
from ..metadata import counts_by, frame_metadata, preview, stored
from ..partitions import dataset_and_shard, image_partitions
from ..resources import DatasetsResource
from ..waves import REGENERATED

VLM_VERSION = code_version(describe_mod, files=("prompts/mminstruct/image_description.yaml",))
DESCRIBER = "describer"


def _pool() -> str:
    """Unset, the describer loads no model (the step only reads and writes): the `llm` pool, never
    waiting behind `gpu` steps for a slot it does not use."""
    return llm_pool(DESCRIBER) if LLMResource().role_overrides(DESCRIBER) else LLM


class VlmDescriptionConfig(dg.Config):
    rule: describe_mod.Rule = "thin"  # which images the VLM describes: thin metadata | always (the paper) | never
    thin_max_facts: int = describe_mod.THIN_MAX_FACTS
    seed: int = 0
    max_tokens: int = describe_mod.DESCRIPTION_PARAMS.max_tokens


@dg.asset(partitions_def=image_partitions, code_version=VLM_VERSION,
          group_name="mminstruct", pool=_pool(), tags=REGENERATED, kinds={"parquet"},
          retry_policy=LLM_RETRY_POLICY)
@retry_only_transient
def vlm_descriptions(context: dg.AssetExecutionContext, config: VlmDescriptionConfig, datasets: DatasetsResource,
                     llm: LLMResource, grouped_metadata: Parent):
    """Images described by a vision-language model (the `describer` LLM role, an OpenAI-compatible
    endpoint that takes images) where the rule asks for it; image_descriptions puts the kept ones
    before the metadata's text. With no describer configured, no image is sent and none is listed."""
    dataset, shard = dataset_and_shard(context)
    parent = grouped_metadata.pointer
    configured = bool(llm.role_overrides(DESCRIBER))  # a text model cannot see: never the generator by default
    rows: list[dict] = []
    identity = None
    llm_meta: dict = {}
    if configured and config.rule != "never":
        grouped = grouped_metadata.read()  # read only when the describer runs
        wanted = [r for r in grouped.select("image_id", "image_key", "captions", "boxes", "qa", "ocr").iter_rows(named=True)
                  if describe_mod.wants_vlm(config.rule, fact_count(r), config.thin_max_facts)]
        images, rows = _read_images(datasets.layout(dataset).images_dir, wanted)
        describer = llm.role(DESCRIBER)
        params = replace(describe_mod.DESCRIPTION_PARAMS, max_tokens=config.max_tokens)
        jobs = describe_mod.description_requests(images, config.seed, params=params)
        results, llm_meta = describer.run_batch(context, [j.request for j in jobs], label="descriptions") \
            if jobs else ([], {})
        rows += [describe_mod.description_row(j, r) for j, r in zip(jobs, results, strict=True)]
        identity = describer.get_client().identity.as_dict()
    frame = rows_frame(rows, [*lineage_columns(dataset, parent["dataset_version"], VLM_VERSION),
                              pl.lit(shard).alias("shard")])
    version = content_hash(parent["data_version"], VLM_VERSION, config.model_dump(), identity)
    return stored(frame, version, dataset_version=parent["dataset_version"], code_version=VLM_VERSION, metadata={
        **frame_metadata(frame), "describer": "configured" if configured else
        "not configured (VISIT_DESCRIBER_LLM_*): metadata descriptions only", "rule": config.rule,
        "kept": int(frame["kept"].sum()) if rows else 0,
        "by_filter_reason": counts_by(frame.filter(~pl.col("kept")), "filter_reason") if rows else {},
        "preview": preview(frame, ["image_id", "vlm_description", "kept"]), **llm_meta})


def _read_images(images_dir, wanted: list[dict]) -> tuple[list[tuple[str, ImageInput]], list[dict]]:
    """(image id, image) for each readable file; a row with the reason for each unreadable one."""
    images, unreadable = [], []
    for r in wanted:
        try:
            key = r["image_key"]  # a file or a shard member (image_store): read in place
            images.append((r["image_id"], ImageInput.from_bytes(read_bytes(images_dir, key), name=key.rsplit("/", 1)[-1])))
        except (OSError, ValueError, UnsafePath) as e:
            unreadable.append(describe_mod.unreadable_row(r["image_id"], f"{type(e).__name__}: {e}"))
    return images, unreadable
