"""Dagster side of the model layer: the LLM resource and the batch helper."""

from .resources import LLMResource, default_cache_path, llm_metadata, run_llm_batch

__all__ = ["LLMResource", "default_cache_path", "llm_metadata", "run_llm_batch"]
