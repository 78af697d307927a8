"""The resources every code location starts from; a keyword replaces one (tests, the cluster profile)."""

from __future__ import annotations

import dagster as dg

from .defs.catalog.assets import CatalogResource
from .defs.llm.resources import LLMResource
from .defs.models.resources import ClipResource, EmbedderResource, RewardResource
from .defs.resources import DatasetsResource, ParquetIOManager, StoreResource


def shared_resources(**chosen: dg.ConfigurableResource | dg.ConfigurableIOManager) -> dict[str, object]:
    resources: dict[str, object] = {
        "store": StoreResource(), "datasets": DatasetsResource(), "llm": LLMResource(), "clip": ClipResource(),
        "embedder": EmbedderResource(), "reward": RewardResource(), "catalog": CatalogResource(), **chosen}
    # the IO manager writes where the chosen store is (a test's folder, the cluster's bucket)
    resources.setdefault("io_manager", ParquetIOManager(store=resources["store"]))
    return resources
