"""Checks on the Instructify side, evaluated in the producing step."""

import dagster as dg
import polars as pl

from ..metadata import required_columns_spec

conversation_check_specs = [
    dg.AssetCheckSpec("every_image_accounted_for", asset="conversation_attempts", blocking=True,
                      description="each grouped image has a 'stopped' attempt row explaining its conversation count"),
    dg.AssetCheckSpec("unique_conversation_ids", asset="generated_conversations", blocking=True),
    required_columns_spec("generated_conversations"),
]


def every_image_accounted_for(image_ids: list[str], attempts: pl.DataFrame) -> dg.AssetCheckResult:
    stopped = set(attempts.filter(pl.col("status") == "stopped")["image_id"]) if attempts.height else set()
    missing = sorted(set(image_ids) - stopped)
    return dg.AssetCheckResult(check_name="every_image_accounted_for", asset_key="conversation_attempts",
                               passed=not missing, metadata={"images": len(image_ids), "missing": missing[:20]})


def unique_conversation_ids(conversations: pl.DataFrame) -> dg.AssetCheckResult:
    dupes = conversations.height - conversations["conversation_id"].n_unique() if conversations.height else 0
    return dg.AssetCheckResult(check_name="unique_conversation_ids", asset_key="generated_conversations",
                               passed=dupes == 0, metadata={"duplicates": dupes})
