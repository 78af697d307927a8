"""The code location: assets, checks, sensors and resources of every domain, gathered here only."""

from __future__ import annotations

import dagster as dg

from .defs import automation
from .defs.conversations import assets as conversation_assets
from .defs.ingest import assets as ingest_assets
from .defs.ingest import sensors as ingest_sensors
from .defs.instructify import assets as instructify_assets
from .defs.llm.resources import LLMResource
from .defs.mminstruct import assets as mminstruct_assets
from .defs.mminstruct import descriptions as mminstruct_descriptions
from .defs.mminstruct import examples as mminstruct_examples
from .defs.mminstruct import sensors as mminstruct_sensors
from .defs.models import assets as model_assets
from .defs.models.resources import ClipResource, EmbedderResource, RewardResource
from .defs.resources import DatasetsResource, StoreResource
from .defs.selection import assets as selection_assets


def build_defs(**resources: dg.ConfigurableResource) -> dg.Definitions:
    """The definitions with default resources; keyword arguments replace resources (tests, profiles)."""
    defaults = {
        "store": StoreResource(), "datasets": DatasetsResource(),
        "llm": LLMResource(), "clip": ClipResource(), "embedder": EmbedderResource(), "reward": RewardResource(),
    }
    return dg.Definitions(
        assets=dg.load_assets_from_modules(
            [ingest_assets, model_assets, instructify_assets, mminstruct_assets, mminstruct_descriptions,
             mminstruct_examples, conversation_assets, selection_assets]),
        sensors=[ingest_sensors.dataset_folder_sensor, automation.regenerate_downstream,
                 mminstruct_sensors.seed_file_sensor],
        schedules=[ingest_sensors.nightly_reingest],
        jobs=[ingest_sensors.ingest_dataset_job],
        resources={**defaults, **resources},
    )


defs = build_defs()
