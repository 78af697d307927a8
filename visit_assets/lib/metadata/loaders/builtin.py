"""The loaders that ship with the product, as registry entries (registry.py)."""

from __future__ import annotations

from pathlib import Path

from . import (
    aokvqa,
    chartqa,
    conceptual_captions,
    docvqa,
    flickr30k_entities,
    gqa,
    image_paragraphs,
    llavar,
    localized_narratives,
    lvis,
    ocrvqa,
    refcoco,
    scienceqa,
    shards,
    stvqa,
    tallyqa,
    textcaps,
    textvqa,
    visual7w,
    visual_genome,
    vqa,
    vqa_e,
    vsr,
)
from .coco import load_coco, looks_like_coco
from .llava import load_llava, looks_like_llava
from .records_format import load_records
from .registry import NO, SIGNATURE, STRUCTURE, Loader


def _coco(path: Path, head: bytes) -> int:
    return STRUCTURE if path.suffix == ".json" and looks_like_coco(head) else NO  # any {"annotations": [...]}


def _llava(path: Path, head: bytes) -> int:
    return SIGNATURE if path.suffix == ".json" and looks_like_llava(head) else NO


def _records(path: Path, head: bytes) -> int:
    return STRUCTURE if path.suffix in (".jsonl", ".parquet") else NO


LOADERS = [
    Loader("coco", load_coco, _coco, description="COCO captions / instances JSON (2014, 2017)"),
    Loader("llava", load_llava, _llava, description="LLaVA conversation JSON: QA pairs per image"),
    Loader("records", load_records, _records, description="this product's record format (JSONL or Parquet)",
           suffixes=(".jsonl", ".parquet")),
    # the datasets Instructify's recipe draws on (docs/loaders.md)
    *(m.LOADER for m in (vqa, textvqa, textcaps, aokvqa, tallyqa, gqa, vsr, visual_genome, image_paragraphs,
                         localized_narratives, conceptual_captions, lvis, refcoco, flickr30k_entities, visual7w,
                         vqa_e)),
    # text-rich VQA sets (docs/loaders.md)
    *(m.LOADER for m in (stvqa, ocrvqa, docvqa, chartqa, scienceqa)), docvqa.INFOGRAPHIC_LOADER, llavar.LOADER,
    # web-scale shards, read in place (docs/loaders.md "Web-scale shards")
    shards.WEBDATASET_LOADER, shards.PARQUET_IMAGES_LOADER,
]
