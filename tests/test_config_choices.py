"""Config fields that take one of a fixed set of names are `Literal` types whose names are the pure
logic's own (lib/): Dagster's config schema offers them (an enum in the launchpad) and refuses any
other value before a run starts, naming the field; the lib functions still refuse an unknown name
for callers outside Dagster."""

from __future__ import annotations

from typing import get_args

import dagster as dg
import numpy as np
import polars as pl
import pytest

from visit_assets.definitions import defs
from visit_assets.defs.conversations.assets import ExportConfig, GenerationConfig
from visit_assets.defs.instructify.assets import ImageFactsConfig
from visit_assets.defs.llm.resources import LLMResource
from visit_assets.defs.mminstruct.descriptions import VlmDescriptionConfig
from visit_assets.defs.models.resources import ClipResource
from visit_assets.defs.partitions import dataset_partitions
from visit_assets.defs.selection.assets import EvaluationConfig, ImageClusterConfig, SelectionConfig
from visit_assets.lib.instructify import sampling
from visit_assets.lib.llm import backends, openai_backend
from visit_assets.lib.mminstruct import describe
from visit_assets.lib.models import clip, decode_pool
from visit_assets.lib.selection import clustering, final_score, pairwise, ranking, select

BOGUS = "no-such-choice"

# (op, its config class, the field, the names the pure logic knows)
OP_CHOICES = [
    ("image_clusters", ImageClusterConfig, "method", clustering.METHODS),
    ("selected_subset", SelectionConfig, "scaling", final_score.SCALINGS),
    ("selected_subset", SelectionConfig, "quota_rule", select.RULES),
    ("selected_subset", SelectionConfig, "method", select.METHODS),
    ("selected_subset", SelectionConfig, "pool", ranking.POOLS),
    ("pairwise_evaluation", EvaluationConfig, "rule", pairwise.RULES),
    ("pairwise_evaluation", EvaluationConfig, "baseline", ("random", "imported")),  # defs/selection/scoring.py
    ("generated_conversations", GenerationConfig, "consume", sampling.CONSUME_RULES),
    ("vlm_descriptions", VlmDescriptionConfig, "rule", get_args(describe.Rule)),
    ("image_facts", ImageFactsConfig, "layout_text", ("tree", "paragraphs")),  # defs/instructify/assets.py
    ("visit_export", ExportConfig, "source", ("selected", "filtered")),  # defs/conversations/assets.py
]
# (resource key, its class, the field, the names the pure logic knows)
RESOURCE_CHOICES = [
    ("llm", LLMResource, "schema_style", openai_backend.SCHEMA_STYLES),
    ("clip", ClipResource, "loader", decode_pool.LOADERS),
]
ALL = [(cls, field, names) for _, cls, field, names in OP_CHOICES + RESOURCE_CHOICES]


def _job() -> dg.JobDefinition:
    return defs.resolve_implicit_global_asset_job_def()


def _ops(op: str, field: str, value: str) -> dict:
    return {"ops": {op: {"config": {field: value}}}}


def _resources(key: str, field: str, value: str) -> dict:
    return {"resources": {key: {"config": {field: value}}}}


@pytest.mark.parametrize(("cls", "field", "names"), ALL, ids=[f"{c.__name__}.{f}" for c, f, _ in ALL])
def test_the_field_type_is_the_pure_logics_set_of_names(cls, field, names):
    info = cls.model_fields[field]
    assert get_args(info.annotation) == tuple(names)  # one list: a name added in lib/ reaches the config
    assert info.default in names


def test_the_lib_names_cover_their_named_constants():
    assert {clustering.METHOD_EXACT, clustering.METHOD_ANN, clustering.METHOD_LANDMARK,
            clustering.METHOD_KMEANS} < set(clustering.METHODS)


@pytest.mark.parametrize(("op", "field", "names"), [(o, f, n) for o, _, f, n in OP_CHOICES],
                         ids=[f"{o}.{f}" for o, _, f, _ in OP_CHOICES])
def test_run_config_takes_every_choice_and_refuses_others_naming_the_field(op, field, names):
    job = _job()
    for name in names:
        resolved = dg.validate_run_config(job, _ops(op, field, name))
        assert resolved["ops"][op]["config"][field] == name
    with pytest.raises(dg.DagsterInvalidConfigError) as refused:
        dg.validate_run_config(job, _ops(op, field, BOGUS))
    assert f"root:ops:{op}:config:{field}" in str(refused.value) and BOGUS in str(refused.value)


@pytest.mark.parametrize(("key", "field", "names"), [(k, f, n) for k, _, f, n in RESOURCE_CHOICES],
                         ids=[f"{k}.{f}" for k, _, f, _ in RESOURCE_CHOICES])
def test_resource_config_takes_every_choice_and_refuses_others_naming_the_field(key, field, names):
    job = _job()
    for name in names:
        assert dg.validate_run_config(job, _resources(key, field, name))["resources"][key]["config"][field] == name
    with pytest.raises(dg.DagsterInvalidConfigError) as refused:
        dg.validate_run_config(job, _resources(key, field, BOGUS))
    assert f"root:resources:{key}:config:{field}" in str(refused.value)


def test_a_run_with_an_unknown_choice_is_refused_before_any_step_runs():
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(dataset_partitions.name, ["sample"])
        with pytest.raises(dg.DagsterInvalidConfigError, match="root:ops:selected_subset:config:quota_rule"):
            _job().execute_in_process(instance=instance, partition_key="sample",
                                      asset_selection=[dg.AssetKey("selected_subset"), dg.AssetKey("selection_ranking")],
                                      run_config=_ops("selected_subset", "quota_rule", "rounded"))
        assert not instance.get_runs()  # refused before a run was even created


def test_the_config_classes_refuse_an_unknown_name_when_built_in_python():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="method"):
        SelectionConfig(method="best")
    with pytest.raises(ValidationError, match="schema_style"):
        LLMResource(schema_style="xml")


def test_the_pure_functions_still_refuse_unknown_names():
    """What the config type now guarantees inside Dagster, lib/ still checks for every other caller."""
    with pytest.raises(ValueError, match="method"):
        clustering.spectral_clusters(np.zeros((3, 2), np.float32), k=2, method=BOGUS)
    with pytest.raises(ValueError, match="rule"):
        select.quotas({0: 3}, 1, rule=BOGUS)
    with pytest.raises(ValueError, match="method"):
        select.select(["a"], [1.0], [0], 1, method=BOGUS)
    with pytest.raises(ValueError, match="scaling"):
        final_score.final_scores({"length": np.ones(2)}, scaling=BOGUS)
    with pytest.raises(ValueError, match="pool"):
        ranking.pool_rows(pl.DataFrame({"recipe": ["x"]}), BOGUS)
    with pytest.raises(ValueError, match="rule"):
        pairwise.win_tie_lose(["A"], ["B"], rule=BOGUS)
    with pytest.raises(ValueError, match="consume"):
        sampling.SamplingConfig(consume=BOGUS)
    with pytest.raises(ValueError, match="schema_style"):
        openai_backend.OpenAIBackend(["http://127.0.0.1:9"], served_model="m", schema_style=BOGUS)
    with pytest.raises(ValueError, match="loader"):
        clip.ClipEncoder(loader=BOGUS)
    with pytest.raises(ValueError, match="unknown LLM backend"):
        backends.make_backend(BOGUS)
