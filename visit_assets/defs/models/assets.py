"""Model domain assets: image_embeddings (CLIP image vectors, or an honest text fallback)."""

import dagster as dg
import numpy as np
import polars as pl

from ...lib.code_version import code_version
from ...lib.ids import content_hash
from ...lib.metadata.image_store import ImageRef
from ...lib.metadata.pipeline import lineage_columns
from ...lib.mminstruct.match import CLIP_IMAGE, DESCRIPTION_TEXT  # the embedding spaces matching reads
from ...lib.models import clip as clip_mod
from ...lib.models import clip_cache, decode_pool, image_prep, threads
from ...lib.models import embedder as embedder_mod
from ...lib.storage import Parent
from ..k8s import GPU_OP_TAGS
from ..metadata import frame_metadata, stored
from ..partitions import dataset_and_shard, image_partitions
from ..resources import DatasetsResource
from ..waves import REGENERATED
from . import checks
from .resources import ClipResource, EmbedderResource

# clip.py was split into these modules; all of them still make (or name) the embeddings
EMBEDDING_VERSION = code_version(clip_mod, clip_cache, decode_pool, image_prep, threads, embedder_mod)


def _image_paths(images_dir, keys: list[str]) -> list[ImageRef]:
    """Each key as an image to open (a file or a shard member): image_store vets the key again
    when it opens it, so an unsafe one is a per-row error, never an open() outside the folder."""
    return [ImageRef(images_dir, key) for key in keys]


@dg.asset(partitions_def=image_partitions, deps=["grouped_metadata"],
          code_version=EMBEDDING_VERSION, group_name="models", tags=REGENERATED,
          kinds={"pytorch", "parquet"}, pool="gpu", op_tags=GPU_OP_TAGS, check_specs=checks.embedding_check_specs)
def image_embeddings(context: dg.AssetExecutionContext, datasets: DatasetsResource, clip: ClipResource,
                     embedder: EmbedderResource, image_descriptions: Parent):
    """One vector per grouped image, with the model that made it.

    With CLIP weights configured these are CLIP image embeddings (`embedding_space` = clip-image).
    Without them, the image's text description is embedded by the sentence embedder instead
    (`description-text`): honest, useful for clustering, and never mistaken for CLIP.
    """
    dataset, shard = dataset_and_shard(context)
    parent = image_descriptions.pointer
    described = image_descriptions.read().sort("image_id")
    encoder = clip.get()
    if encoder.available:
        space, model, lineage = CLIP_IMAGE, encoder.identity, clip.lineage()
        paths = _image_paths(datasets.layout(dataset).images_dir, described["image_key"].to_list())
        vectors, errors = encoder.encode_images(paths)
    else:
        context.log.warning("no CLIP weights configured: embedding image descriptions with the sentence embedder")
        text_model = embedder.get()
        space, model, lineage = DESCRIPTION_TEXT, text_model.identity, embedder.lineage()
        vectors = text_model.encode(described["description"].to_list())
        errors = [None] * described.height
    frame = described.select("image_id", "image_key", "shard").with_columns(
        pl.Series("embedding", np.asarray(vectors, dtype=np.float32)),
        pl.Series("error", errors, dtype=pl.String),
        pl.lit(space).alias("embedding_space"), pl.lit(model.name).alias("model"),
        pl.lit(model.weights).alias("model_weights"),
        *lineage_columns(dataset, parent["dataset_version"], EMBEDDING_VERSION),
    )
    data_version = content_hash(parent["data_version"], EMBEDDING_VERSION, model.as_dict())
    dtype = frame["embedding"].dtype  # an Array: the vectors are one 2-D array
    yield stored(frame, data_version, dataset_version=parent["dataset_version"], code_version=EMBEDDING_VERSION,
                 metadata={**frame_metadata(frame), "embedding_space": space,
                           "dim": int(dtype.size) if frame.height and isinstance(dtype, pl.Array) else 0,
                           "failed_images": int(frame["error"].is_not_null().sum()), **lineage})
    yield checks.one_vector_per_image(described, frame)
