"""Checks on model outputs, evaluated in the producing step."""

import dagster as dg
import numpy as np
import polars as pl

EMBEDDINGS = "image_embeddings"

embedding_check_specs = [
    dg.AssetCheckSpec("one_vector_per_image", asset=EMBEDDINGS, blocking=True,
                      description="every described image has exactly one vector; only failed images are NaN"),
]


def one_vector_per_image(described: pl.DataFrame, frame: pl.DataFrame) -> dg.AssetCheckResult:
    vectors = np.stack(list(frame["embedding"].to_numpy())) if frame.height else np.zeros((0, 1))
    nan_rows = np.isnan(vectors).any(axis=1)
    failed = frame["error"].is_not_null().to_numpy()
    ok = (frame.height == described.height and frame["image_id"].n_unique() == frame.height
          and bool((nan_rows == failed).all()))
    return dg.AssetCheckResult(check_name="one_vector_per_image", asset_key=EMBEDDINGS, passed=ok,
                               metadata={"images": described.height, "vectors": frame.height,
                                         "failed_images": int(failed.sum())})
