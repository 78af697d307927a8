"""Dagster side of the non-LLM models: embedder, CLIP and reward-model resources."""

from .resources import ClipResource, EmbedderResource, RewardResource, identity_lineage, weights_status

__all__ = ["ClipResource", "EmbedderResource", "RewardResource", "identity_lineage", "weights_status"]
