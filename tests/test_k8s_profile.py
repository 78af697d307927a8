"""The `k8s` deployment profile (deploy/k8s/, docs/deploy-k8s.md), checked as far as it can be here.

No cluster, no Docker engine, no Helm chart: the instance config is validated with Dagster's own
schemas, step pods are built with dagster-k8s's own job construction, manifests are parsed into the
`kubernetes` client's API models (unknown fields fail), the settings file is read as kubectl reads it
(and by kubectl's client-side dry run as well where kubectl is installed: nothing here skips without
it), and the definitions are built and validated with the cluster settings. The files are also
checked against each other and against the code, so that the page cannot drift.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

import dagster as dg
import dagster_k8s
import dagster_postgres
import kubernetes
import pytest
import yaml
from dagster._config import process_config
from dagster._core.execution.api import create_execution_plan
from dagster._core.instance.config import ConcurrencyConfig, PoolGranularity, dagster_instance_config
from dagster._core.instance.ref import InstanceRef
from dagster._core.storage.config import pg_config
from dagster._serdes.config_class import class_from_code_pointer
from dagster_k8s.container_context import K8sContainerContext
from dagster_k8s.job import (
    USER_DEFINED_K8S_CONFIG_KEY,
    DagsterK8sJobConfig,
    UserDefinedDagsterK8sConfig,
    construct_dagster_k8s_job,
    get_user_defined_k8s_config,
)
from dagster_k8s.models import k8s_model_from_dict, k8s_snake_case_dict

from visit_assets.defs import k8s as k8s_tags
from visit_assets.defs.k8s import GPU_OP_TAGS, gpu_op_tags
from visit_assets.defs.llm.resources import LLMResource
from visit_assets.lib.llm.cache import FileCache, LLMCache, open_cache
from visit_assets.lib.llm.openai_backend import OpenAIBackend, normalize_base_url

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "k8s"
DOC = ROOT / "docs" / "deploy-k8s.md"
GPU = "nvidia.com/gpu"
IMAGE = "registry.example.com/visit-assets:0.1.0"

# Keys the Dagster Helm chart (1.13) accepts, from its values schema (helm/dagster/schema/.../
# user_deployments.py, run_launcher.py, concurrency.py: extra keys are rejected by `helm install`).
CHART_USER_DEPLOYMENT_KEYS = {
    "name", "image", "port", "dagsterApiGrpcArgs", "codeServerArgs", "includeConfigInLaunchedRuns", "env",
    "envConfigMaps", "envSecrets", "annotations", "nodeSelector", "affinity", "tolerations",
    "podSecurityContext", "securityContext", "resources", "livenessProbe", "readinessProbe", "startupProbe",
    "labels", "volumeMounts", "volumes", "schedulerName", "initContainers", "sidecarContainers",
    "deploymentStrategy", "serviceAccount",
}
CHART_K8S_RUN_LAUNCHER_KEYS = {
    "image", "imagePullPolicy", "jobNamespace", "loadInclusterConfig", "kubeconfigFile", "envConfigMaps",
    "envSecrets", "envVars", "volumeMounts", "volumes", "labels", "failPodOnRunFailure", "resources",
    "schedulerName", "securityContext", "runK8sConfig",
}
CHART_RUN_K8S_CONFIG_KEYS = {"containerConfig", "podSpecConfig", "podTemplateSpecMetadata", "jobSpecConfig", "jobMetadata"}
CHART_CONCURRENCY = {"enabled": None, "pools": {"defaultLimit", "granularity", "opGranularityRunBuffer"},
                     "runs": {"maxConcurrentRuns", "tagConcurrencyLimits"}}


# -- loading -------------------------------------------------------------------------------------

def _yaml(name: str):
    return yaml.safe_load((K8S / name).read_text())


def _yaml_docs(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]


def _env_file() -> dict[str, str]:
    """deploy/k8s/visit-assets.env.example as kubectl's --from-env-file reads it."""
    out = {}
    for line in (K8S / "visit-assets.env.example").read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep and key == key.strip() and re.fullmatch(r"[A-Z_][A-Z0-9_]*", key), f"bad env line {line!r}"
        assert "#" not in value and not value.startswith(("'", '"')), f"kubectl would keep this verbatim: {line!r}"
        out[key] = value
    return out


def _instance() -> dict:
    return _yaml("dagster.yaml")


def _launcher() -> dict:
    return _instance()["run_launcher"]["config"]


def _values() -> dict:
    return _yaml("values-dagster.yaml")


def _user_deployment() -> dict:
    (dep,) = _values()["dagster-user-deployments"]["deployments"]
    return dep


def _vllm() -> tuple[dict, dict]:
    docs = {d["kind"]: d for d in _yaml_docs("vllm.yaml")}
    return docs["StatefulSet"], docs["Service"]


def _arg(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


def _cluster_env(tmp_path: Path) -> dict[str, str]:
    """The cluster settings file, with the shared volume moved to tmp_path/visit and a dummy API key.

    Every path under VISIT_HOME keeps its place below the new home, written as the file writes it
    (so VISIT_LLM_CACHE keeps its trailing slash, which selects the folder cache)."""
    env = _env_file()
    home = tmp_path / "visit"
    for key in ("VISIT_STORE", "VISIT_DATASETS", "VISIT_LLM_CACHE", "HF_HOME"):
        rel = PurePosixPath(env[key]).relative_to(env["VISIT_HOME"])
        env[key] = str(home / rel) + ("/" if env[key].endswith("/") else "")
    env["VISIT_HOME"] = str(home)
    env[env["VISIT_LLM_API_KEY_ENV"]] = "test-key-not-a-secret"
    return env


def _gpu_and_cpu_assets():
    @dg.asset(pool="gpu", op_tags=GPU_OP_TAGS)
    def gpu_asset() -> dg.MaterializeResult:
        return dg.MaterializeResult(metadata={"ran": True})

    @dg.multi_asset(specs=[dg.AssetSpec("gpu_multi")], pool="gpu", op_tags=GPU_OP_TAGS)
    def gpu_multi():
        return dg.MaterializeResult(asset_key="gpu_multi")

    @dg.asset
    def cpu_asset() -> dg.MaterializeResult:
        return dg.MaterializeResult()

    return [gpu_asset, gpu_multi, cpu_asset]


def _step_tags() -> dict[str, dict[str, str]]:
    job = dg.Definitions(assets=_gpu_and_cpu_assets()).resolve_implicit_global_asset_job_def()
    return {step.key: dict(step.tags) for step in create_execution_plan(job).steps}


def _k8s_model(doc: dict):
    cls = getattr(kubernetes.client, f"V1{doc['kind']}")
    return k8s_model_from_dict(cls, k8s_snake_case_dict(cls, doc))


def _under(path: str, parent: str) -> bool:
    return PurePosixPath(path).is_relative_to(PurePosixPath(parent))


def _mount_for(path: str, mounts: list[dict]) -> dict:
    hits = [m for m in mounts if _under(path, m["mountPath"])]
    assert hits, f"{path} is on no mounted volume"
    return max(hits, key=lambda m: len(m["mountPath"]))


# -- the Dagster instance --------------------------------------------------------------------------

def test_instance_config_passes_dagster_schema():
    config, custom_class = dagster_instance_config(str(K8S))
    assert custom_class is None
    assert config["run_launcher"]["module"] == "dagster_k8s" and config["run_launcher"]["class"] == "K8sRunLauncher"
    assert set(config["storage"]) == {"postgres"}

    ref = InstanceRef.from_dir(str(K8S))
    assert (ref.run_launcher_data.module_name, ref.run_launcher_data.class_name) == ("dagster_k8s", "K8sRunLauncher")
    assert ref.storage_data.class_name == "DagsterPostgresStorage"
    assert ref.run_coordinator_data.class_name == "QueuedRunCoordinator"  # the run queue

    concurrency = ConcurrencyConfig.from_concurrency_settings(config["concurrency"], None)
    assert concurrency.pool_config.default_pool_limit == config["concurrency"]["pools"]["default_limit"] >= 1
    assert concurrency.pool_config.pool_granularity == PoolGranularity.OP
    assert config["concurrency"]["runs"]["max_concurrent_runs"] >= 1


def test_instance_parts_pass_their_own_config_types(monkeypatch):
    instance = _instance()
    launcher_cls = class_from_code_pointer(instance["run_launcher"]["module"], instance["run_launcher"]["class"])
    assert launcher_cls is dagster_k8s.K8sRunLauncher
    result = process_config(launcher_cls.config_type(), instance["run_launcher"]["config"])
    assert result.success, result.errors
    assert result.value["instance_config_map"] and result.value["postgres_password_secret"]

    assert instance["storage"]["postgres"]["postgres_db"]["password"] == {"env": "DAGSTER_PG_PASSWORD"}
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", "from-the-environment")
    result = process_config(pg_config(), instance["storage"]["postgres"])
    assert result.success, result.errors
    assert result.value["postgres_db"]["password"] == "from-the-environment"
    assert dagster_postgres.DagsterPostgresStorage.config_type() is not None


def _walk(node, path=()):
    if isinstance(node, dict):
        for k, v in node.items():
            yield path + (str(k),), k, v
            yield from _walk(v, path + (str(k),))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk(v, path + (str(i),))


def test_no_literal_password_or_key_in_the_profile():
    secret_names = {"postgres_password_secret", "postgresqlSecretName"}  # names of Secrets, not secrets
    for name in ("dagster.yaml", "values-dagster.yaml", "vllm.yaml", "storage.yaml", "workspace.yaml"):
        for doc in _yaml_docs(name):
            for path, key, value in _walk(doc):
                if re.search(r"password|api_?key|token", str(key), re.I) and key not in secret_names:
                    literal = isinstance(value, (str, int)) and not isinstance(value, bool) and str(value) != ""
                    assert not literal, f"{name}: {'.'.join(path)} holds a literal value"
    for key, value in _env_file().items():
        if re.search(r"PASSWORD|TOKEN|KEY", key):
            assert key.endswith("_ENV") and re.fullmatch(r"[A-Z_][A-Z0-9_]*", value), f"{key} must name a variable"


# -- GPU op tags -----------------------------------------------------------------------------------

def test_gpu_op_tags_follow_dagster_k8s_schema():
    assert k8s_tags.K8S_CONFIG_TAG == USER_DEFINED_K8S_CONFIG_KEY
    assert GPU_OP_TAGS == gpu_op_tags() and set(GPU_OP_TAGS) == {USER_DEFINED_K8S_CONFIG_KEY}

    config = UserDefinedDagsterK8sConfig.from_dict(GPU_OP_TAGS[USER_DEFINED_K8S_CONFIG_KEY])
    assert config.container_config["resources"] == {"requests": {GPU: "1"}, "limits": {GPU: "1"}}
    assert {"key": GPU, "operator": "Exists", "effect": "NoSchedule"} in config.pod_spec_config["tolerations"]

    # the executor's path: JSON tag values validated against USER_DEFINED_K8S_JOB_CONFIG_SCHEMA
    parsed = get_user_defined_k8s_config({k: json.dumps(v) for k, v in GPU_OP_TAGS.items()})
    assert parsed.container_config == config.container_config and parsed.pod_spec_config == config.pod_spec_config

    two = get_user_defined_k8s_config({k: json.dumps(v) for k, v in
                                       gpu_op_tags(2, node_selector={"gpu-type": "l4"}).items()})
    assert two.container_config["resources"]["limits"] == {GPU: "2"}
    assert two.pod_spec_config["node_selector"] == {"gpu-type": "l4"}
    for bad in (0, -1, True, 1.5, "1"):
        with pytest.raises(ValueError):
            gpu_op_tags(bad)


def test_gpu_tags_reach_the_steps_and_the_local_executor_ignores_them():
    tags = _step_tags()
    for key in ("gpu_asset", "gpu_multi"):
        parsed = get_user_defined_k8s_config(tags[key])
        assert parsed.container_config["resources"]["limits"] == {GPU: "1"}
    assert USER_DEFINED_K8S_CONFIG_KEY not in tags["cpu_asset"]

    result = dg.materialize(_gpu_and_cpu_assets())  # in process, as on a laptop
    assert result.success


def test_every_step_that_runs_torch_asks_for_a_gpu():
    """A step that loads a model in its own process (CLIP, the sentence embedder, the reward model)
    gets a GPU in its pod on the cluster, and takes the `gpu` pool on any instance."""
    from visit_assets.definitions import defs

    torch_resources = {"clip", "embedder", "reward"}
    graph = defs.resolve_asset_graph()
    torch_steps = {key.to_user_string(): graph.get(key) for key in graph.get_all_asset_keys()
                   if torch_resources & set(graph.get(key).assets_def.required_resource_keys)}
    assert {"image_embeddings", "quality_scores", "clustered_instructions", "instruction_matches"} <= set(torch_steps)
    for name, node in torch_steps.items():
        assert node.pools == {"gpu"}, name
        tags = node.assets_def.op.tags.get(USER_DEFINED_K8S_CONFIG_KEY)  # Dagster keeps op tags as JSON strings
        assert tags and json.loads(tags) == GPU_OP_TAGS[USER_DEFINED_K8S_CONFIG_KEY], name


@pytest.mark.parametrize("install", ["helm", "instance-yaml"])
def test_step_pods_built_by_dagster_k8s(install):
    """What k8s_job_executor would submit for a GPU step and a CPU step, for both install paths."""
    values, instance_launcher = _values(), _launcher()
    if install == "instance-yaml":  # everything on the run launcher (deploy/k8s/dagster.yaml)
        processed = process_config(dagster_k8s.K8sRunLauncher.config_type(), instance_launcher)
        assert processed.success, processed.errors
        cfg = processed.value
        context = K8sContainerContext(
            image_pull_policy=cfg["image_pull_policy"], service_account_name=cfg["service_account_name"],
            env_config_maps=cfg["env_config_maps"], env_secrets=cfg["env_secrets"], volumes=cfg["volumes"],
            volume_mounts=cfg["volume_mounts"], namespace=cfg["job_namespace"],
            run_k8s_config=UserDefinedDagsterK8sConfig.from_dict(cfg["run_k8s_config"]))
        secret, dagster_home, config_map = cfg["postgres_password_secret"], cfg["dagster_home"], cfg["instance_config_map"]
    else:  # the chart: launcher from runLauncher, env and volumes from the code location's container context
        launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
        context = K8sContainerContext(
            image_pull_policy=launcher["imagePullPolicy"],
            run_k8s_config=UserDefinedDagsterK8sConfig.from_dict(
                {"container_config": launcher["runK8sConfig"]["containerConfig"]}))
        dep = _user_deployment()
        assert dep["includeConfigInLaunchedRuns"]["enabled"] is True
        location = {"k8s": {  # what the chart's dagsterUserDeployments.k8sContainerContext renders
            "image_pull_policy": dep["image"]["pullPolicy"],
            "env_config_maps": [c["name"] for c in dep["envConfigMaps"]],
            "env_secrets": [s["name"] for s in dep["envSecrets"]],
            "volumes": dep["volumes"], "volume_mounts": dep["volumeMounts"], "namespace": "visit"}}
        context = context.merge(K8sContainerContext.create_from_config(location))
        secret = values["global"]["postgresqlSecretName"]
        dagster_home, config_map = "/opt/dagster/dagster_home", "dagster-instance"

    job_config = DagsterK8sJobConfig(job_image=IMAGE, dagster_home=dagster_home,
                                     instance_config_map=config_map, postgres_password_secret=secret)
    tags = _step_tags()
    pods = {}
    for step in ("gpu_asset", "cpu_asset"):
        merged = context.merge(K8sContainerContext(run_k8s_config=get_user_defined_k8s_config(tags[step])))
        job = construct_dagster_k8s_job(job_config, ["dagster", "api", "execute_step"],
                                        f"dagster-step-{step.replace('_', '-')}",
                                        user_defined_k8s_config=merged.run_k8s_config,
                                        pod_name=f"dagster-step-{step.replace('_', '-')}")
        pods[step] = job.spec.template.spec

    gpu_pod, cpu_pod = pods["gpu_asset"], pods["cpu_asset"]
    (gpu_c,), (cpu_c,) = gpu_pod.containers, cpu_pod.containers
    assert gpu_c.image == IMAGE
    assert gpu_c.resources.limits == {GPU: "1"}
    assert gpu_c.resources.requests == {"cpu": "1", "memory": "4Gi", GPU: "1"}
    assert any(t.key == GPU and t.operator == "Exists" for t in gpu_pod.tolerations)
    assert GPU not in (cpu_c.resources.requests or {}) and GPU not in (cpu_c.resources.limits or {})
    assert not cpu_pod.tolerations

    env = _env_file()
    for pod, container in ((gpu_pod, gpu_c), (cpu_pod, cpu_c)):
        volumes = {v.name: v for v in pod.volumes}
        assert volumes["visit-store"].persistent_volume_claim.claim_name == "visit-store"
        assert not [v.name for v in pod.volumes if v.host_path is not None]  # nothing node-local
        mounts = [{"name": m.name, "mountPath": m.mount_path} for m in container.volume_mounts]
        assert _mount_for(env["VISIT_STORE"], mounts)["name"] == "visit-store"
        assert _mount_for(env["VISIT_HOME"], mounts)["name"] == "visit-store"
        assert _mount_for(env["VISIT_DATASETS"], mounts)["name"] == "visit-store"
        assert _mount_for(env["VISIT_LLM_CACHE"], mounts)["name"] == "visit-store"  # every node sees every answer
        assert {e.config_map_ref.name for e in container.env_from if e.config_map_ref} >= {"visit-assets-env"}
        assert {e.secret_ref.name for e in container.env_from if e.secret_ref} == {"visit-llm-api"}
        (pg,) = [e for e in container.env if e.name == "DAGSTER_PG_PASSWORD"]
        assert (pg.value_from.secret_key_ref.name, pg.value_from.secret_key_ref.key) == (
            "dagster-postgresql-secret", "postgresql-password")


# -- Helm values and manifests ---------------------------------------------------------------------

def test_helm_values_agree_with_the_instance_and_the_chart_schema():
    values, instance, launcher = _values(), _instance(), _launcher()
    assert values["runLauncher"]["type"] == instance["run_launcher"]["class"] == "K8sRunLauncher"

    chart_launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    assert set(chart_launcher) <= CHART_K8S_RUN_LAUNCHER_KEYS
    assert set(chart_launcher["runK8sConfig"]) <= CHART_RUN_K8S_CONFIG_KEYS
    assert chart_launcher["runK8sConfig"]["containerConfig"] == launcher["run_k8s_config"]["container_config"]
    assert chart_launcher["imagePullPolicy"] == launcher["image_pull_policy"]

    # Postgres: an existing Secret, never a password in the values
    assert values["generatePostgresqlPasswordSecret"] is False
    assert values["postgresql"]["postgresqlPassword"] == ""
    assert values["global"]["postgresqlSecretName"] == launcher["postgres_password_secret"]
    db = instance["storage"]["postgres"]["postgres_db"]
    pg = values["postgresql"]
    assert (pg["postgresqlHost"], pg["postgresqlUsername"], pg["postgresqlDatabase"], pg["service"]["port"]) == (
        db["hostname"], db["username"], db["db_name"], db["port"])

    # run queue and the gpu pool
    conc = values["concurrency"]
    assert conc["enabled"] is True and set(conc) <= set(CHART_CONCURRENCY)
    assert set(conc["pools"]) <= CHART_CONCURRENCY["pools"] and set(conc["runs"]) <= CHART_CONCURRENCY["runs"]
    assert conc["pools"]["defaultLimit"] == instance["concurrency"]["pools"]["default_limit"]
    assert conc["pools"]["granularity"] == instance["concurrency"]["pools"]["granularity"]
    assert conc["runs"]["maxConcurrentRuns"] == instance["concurrency"]["runs"]["max_concurrent_runs"]
    # the chart refuses maxConcurrentRuns in two places
    assert "maxConcurrentRuns" not in values.get("dagsterDaemon", {}).get("runCoordinator", {}).get("config", {}).get(
        "queuedRunCoordinator", {})
    assert (values["dagsterDaemon"]["runMonitoring"]["startTimeoutSeconds"]
            == instance["run_monitoring"]["start_timeout_seconds"])

    # the code location: image, entry point, env and volumes handed to every run
    dep = _user_deployment()
    assert set(dep) <= CHART_USER_DEPLOYMENT_KEYS
    assert dep["image"]["tag"] not in ("", "latest") and f"{dep['image']['repository']}:{dep['image']['tag']}" == IMAGE
    args = dep["dagsterApiGrpcArgs"]
    python_file, workdir = _arg(args, "--python-file"), _arg(args, "--working-directory")
    assert (ROOT / PurePosixPath(python_file).relative_to(workdir)).is_file()
    assert f"WORKDIR {workdir}" in (K8S / "Dockerfile").read_text()
    assert "resources" not in dep  # would override runK8sConfig's requests in run and step pods
    assert [c["name"] for c in dep["envConfigMaps"]] == launcher["env_config_maps"]
    assert [s["name"] for s in dep["envSecrets"]] == launcher["env_secrets"]
    assert dep["volumes"] == launcher["volumes"] and dep["volumeMounts"] == launcher["volume_mounts"]
    for volume in dep["volumes"]:
        k8s_model_from_dict(kubernetes.client.V1Volume, k8s_snake_case_dict(kubernetes.client.V1Volume, volume))
    for mount in dep["volumeMounts"]:
        k8s_model_from_dict(kubernetes.client.V1VolumeMount, k8s_snake_case_dict(kubernetes.client.V1VolumeMount, mount))


def test_workspace_yaml_points_at_the_code_server():
    from dagster._core.workspace.config_schema import process_workspace_config

    workspace = _yaml("workspace.yaml")
    assert process_workspace_config(workspace).success
    (entry,) = workspace["load_from"]
    dep = _user_deployment()
    assert entry["grpc_server"]["port"] == dep["port"] and entry["grpc_server"]["host"] == dep["name"]


def test_manifests_are_valid_kubernetes_objects():
    docs = _yaml_docs("vllm.yaml") + _yaml_docs("storage.yaml")
    assert sorted(d["kind"] for d in docs) == ["PersistentVolumeClaim", "Service", "StatefulSet"]
    namespace = _launcher()["job_namespace"]
    for doc in docs:
        model = _k8s_model(doc)  # unknown or mistyped fields raise
        assert model.metadata.namespace == namespace


def test_shared_store_is_read_write_many_and_holds_the_llm_cache():
    (pvc,) = _yaml_docs("storage.yaml")
    assert "ReadWriteMany" in pvc["spec"]["accessModes"]
    volumes = {v["name"]: v for v in _launcher()["volumes"]}
    assert volumes["visit-store"]["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]

    env = _env_file()
    assert _under(env["VISIT_STORE"], env["VISIT_HOME"]) and _under(env["VISIT_DATASETS"], env["VISIT_HOME"])
    for mounts in (_launcher()["volume_mounts"], _user_deployment()["volumeMounts"]):
        assert _mount_for(env["HF_HOME"], mounts)["name"] == "visit-store"
        assert _mount_for(env["VISIT_LLM_CACHE"], mounts)["name"] == "visit-store"


def test_llm_cache_is_the_folder_cache_on_the_shared_volume():
    """SQLite WAL needs one host; on the shared volume the cache is one file per answer (FileCache)."""
    location = _env_file()["VISIT_LLM_CACHE"]
    assert location.endswith("/"), "VISIT_LLM_CACHE must end in '/': without it a fresh volume gets a SQLite file"
    assert _under(location, _env_file()["VISIT_HOME"])
    cache = open_cache(location)  # opens nothing: /data/visit need not exist here
    assert isinstance(cache, FileCache) and cache.path == Path(location)
    if not Path(location).exists():  # why the "/": the same path without it, on a fresh volume, is SQLite
        assert isinstance(open_cache(location.rstrip("/")), LLMCache)

    text = (K8S / "visit-assets.env.example").read_text()
    comment = text[: text.index("VISIT_LLM_CACHE=")].rsplit("\n\n", 1)[-1]
    assert "TRAILING SLASH IS REQUIRED" in comment
    doc = DOC.read_text()
    assert f"VISIT_LLM_CACHE={location}" in doc and "trailing slash is required" in doc.lower()
    assert "lookupcache=positive" in doc[doc.index("### The LLM cache on a cluster"):]


def test_no_host_path_volume_anywhere_in_the_profile():
    for path in sorted(K8S.glob("*.yaml")):
        for doc in _yaml_docs(path.name):
            hits = [".".join(p) for p, key, _ in _walk(doc) if key in ("hostPath", "host_path")]
            assert not hits, f"{path.name}: node-local volume at {hits}"
    assert not [v["name"] for v in _launcher()["volumes"] if "hostPath" in v]
    assert not [v["name"] for v in _user_deployment()["volumes"] if "hostPath" in v]
    assert "llm-cache" not in "".join(p.read_text() for p in K8S.iterdir() if p.is_file())


def test_vllm_pool_matches_the_settings():
    sts, svc = _vllm()
    env = _env_file()
    assert svc["spec"]["clusterIP"] == "None" and sts["spec"]["serviceName"] == svc["metadata"]["name"]
    assert svc["spec"]["selector"].items() <= sts["spec"]["template"]["metadata"]["labels"].items()

    (container,) = sts["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["vllm", "serve"]
    args = container["args"]
    assert _arg(args, "--served-model-name") == env["VISIT_LLM_SERVED_MODEL"]
    (port,) = container["ports"]
    (svc_port,) = svc["spec"]["ports"]
    assert int(_arg(args, "--port")) == port["containerPort"] == svc_port["port"]

    resources = container["resources"]
    assert resources["requests"][GPU] == resources["limits"][GPU] == _arg(args, "--tensor-parallel-size")
    assert any(t["key"] == GPU for t in sts["spec"]["template"]["spec"]["tolerations"])
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] == "/health"  # not behind the API key

    (key_env,) = [e for e in container["env"] if e["name"] == "VLLM_API_KEY"]
    ref = key_env["valueFrom"]["secretKeyRef"]
    assert ref["name"] in [s["name"] for s in _user_deployment()["envSecrets"]]
    assert ref["key"] == env["VISIT_LLM_API_KEY_ENV"]  # the pipeline sends the very key the servers check

    urls = env["VISIT_LLM_BASE_URLS"].split(",")
    assert len(urls) == sts["spec"]["replicas"] >= 2
    name, service = sts["metadata"]["name"], svc["metadata"]["name"]
    for i, url in enumerate(urls):
        parsed = urlparse(url)
        assert (parsed.scheme, parsed.hostname, parsed.port, parsed.path) == ("http", f"{name}-{i}.{service}",
                                                                              port["containerPort"], "/v1")


# -- the settings and the code ---------------------------------------------------------------------

def test_settings_file_sets_the_cluster_backend():
    env = _env_file()
    required = {"VISIT_HOME", "VISIT_STORE", "VISIT_DATASETS", "VISIT_SHARDS", "VISIT_LLM_BACKEND",
                "VISIT_LLM_BASE_URLS", "VISIT_LLM_SERVED_MODEL", "VISIT_LLM_API_KEY_ENV", "VISIT_LLM_CACHE",
                "VISIT_CLIP_ARCH", "VISIT_CLIP_PRETRAINED", "VISIT_REWARD_MODEL"}
    assert required <= set(env)
    assert env["VISIT_LLM_BACKEND"] == "openai"
    assert all(v for v in env.values())


def _kubectl_env_file(path: Path) -> dict[str, str]:
    """`kubectl create configmap --from-env-file` in Python, as kubectl 1.x reads the file
    (k8s.io/kubectl/pkg/cmd/util/env_file.go, then the ConfigMap's key checks): leading whitespace
    trimmed, blank and `#` lines skipped, split at the first `=`, the value kept verbatim (quotes and
    trailing text included), a key without `=` taken from the environment; keys must be valid env var
    and ConfigMap key names, each once."""
    data: dict[str, str] = {}
    for i, line in enumerate(path.read_bytes().decode("utf-8").splitlines()):  # invalid UTF-8 fails here too
        line = (line.removeprefix("\ufeff") if i == 0 else line).lstrip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert re.fullmatch(r"[-._a-zA-Z][-._a-zA-Z0-9]*", key), f"kubectl: {key!r} is not a valid key name"
        assert len(key) <= 253 and key not in data, f"kubectl: cannot add key {key!r}"
        data[key] = value if sep else os.environ.get(key, "")
    return data


def test_settings_file_loads_as_a_configmap():
    """The settings file gives kubectl's ConfigMap exactly the values the tests read (`_env_file`), and that
    ConfigMap is a valid API object. Runs without kubectl; where kubectl is installed, its client-side dry
    run must agree too (the one part that needs it, and it only cross-checks `_kubectl_env_file`)."""
    path = K8S / "visit-assets.env.example"
    data = _kubectl_env_file(path)
    assert data == _env_file()
    configmap = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "visit-assets-env"}, "data": data}
    model = _k8s_model(configmap)  # unknown fields fail
    assert model.data == data and sum(len(k) + len(v) for k, v in data.items()) < 1024 * 1024  # ConfigMap limit
    if shutil.which("kubectl"):
        out = subprocess.run(["kubectl", "create", "configmap", "visit-assets-env", "--from-env-file", str(path),
                              "--dry-run=client", "-o", "json"], capture_output=True, text=True, timeout=60, check=True)
        assert json.loads(out.stdout)["data"] == data


def _code_text() -> str:
    return "\n".join(p.read_text() for p in (ROOT / "visit_assets").rglob("*.py"))


def test_every_visit_variable_named_in_the_profile_is_read_by_the_code():
    code = _code_text()
    named: dict[str, set[str]] = {}
    sources = [DOC, *sorted(p for p in K8S.iterdir() if p.is_file())]
    for path in sources:
        for var in re.findall(r"\bVISIT_[A-Z0-9_]+\b", path.read_text()):
            named.setdefault(var, set()).add(path.name)
    assert len(named) >= 12
    from visit_assets.defs.llm.resources import role_env_names

    made = role_env_names()  # VISIT_<ROLE>_LLM_*: built from the role and field names, not written out
    unread = {v: sorted(f) for v, f in named.items() if v not in made and not re.search(rf"[\"']{v}[\"']", code)}
    assert not unread, f"named in the profile but read nowhere in visit_assets/: {unread}"
    documented = set(re.findall(r"\bVISIT_[A-Z0-9_]+\b", DOC.read_text()))
    assert {k for k in _env_file() if k.startswith("VISIT_")} <= documented


def test_definitions_build_and_the_llm_resource_builds_two_endpoints_offline(tmp_path, monkeypatch):
    env = _cluster_env(tmp_path)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    from visit_assets.definitions import build_defs

    defs = build_defs()
    dg.Definitions.validate_loadable(defs)
    assert defs.resolve_implicit_global_asset_job_def() is not None

    import urllib3

    def no_network(*a, **k):
        raise AssertionError("an HTTP client was created while building the backend")

    monkeypatch.setattr(urllib3, "PoolManager", no_network)
    monkeypatch.setattr(urllib3, "ProxyManager", no_network)
    before = sorted(tmp_path.rglob("*"))
    resource = LLMResource()
    assert resource.backend_kind() == "openai"
    client = resource.get_client()
    backend = client.backend
    assert isinstance(backend, OpenAIBackend)
    assert backend.base_urls == [normalize_base_url(u) for u in env["VISIT_LLM_BASE_URLS"].split(",")]
    assert len(backend.base_urls) == 2
    assert backend.served_model == env["VISIT_LLM_SERVED_MODEL"]
    assert backend.concurrency == int(env["VISIT_LLM_CONCURRENCY"])
    assert backend.timeout_s == float(env["VISIT_LLM_TIMEOUT_S"])
    assert not backend._pools  # nothing contacted, no connection pool yet
    assert backend._headers()["Authorization"] == "Bearer test-key-not-a-secret"  # the key by its variable's name
    assert "test-key-not-a-secret" not in repr(backend) and "vllm-0" not in backend.identity.label()
    assert env["VISIT_LLM_CACHE"].endswith("/")
    assert resource.resolved_cache_path() == env["VISIT_LLM_CACHE"]  # the string as written, slash kept
    assert isinstance(client.cache, FileCache) and client.cache.path == Path(env["VISIT_LLM_CACHE"])
    assert not Path(env["VISIT_LLM_CACHE"]).exists()  # made by the first answer written, not by the client
    assert sorted(tmp_path.rglob("*")) == before  # building the client created nothing at all


def _load_cluster_location():
    spec = importlib.util.spec_from_file_location("visit_assets_k8s_location", K8S / "definitions.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.defs


def test_cluster_code_location_runs_every_step_in_its_own_pod(tmp_path, monkeypatch):
    for k, v in _cluster_env(tmp_path).items():
        monkeypatch.setenv(k, v)
    from visit_assets.definitions import build_defs

    defs = _load_cluster_location()
    dg.Definitions.validate_loadable(defs)
    jobs = defs.resolve_all_job_defs()
    assert jobs and {job.executor_def.name for job in jobs} == {dagster_k8s.k8s_job_executor.name}
    laptop = build_defs()
    assert {s.key for s in defs.resolve_all_asset_specs()} == {s.key for s in laptop.resolve_all_asset_specs()}

    # Whatever assets carry k8s config tags: valid for dagster-k8s, and only on gpu-pool assets.
    tagged = 0
    for node in defs.resolve_implicit_global_asset_job_def().graph.node_defs:
        if USER_DEFINED_K8S_CONFIG_KEY in node.tags:
            tagged += 1
            assert node.pool == "gpu", f"{node.name} asks for k8s resources outside the gpu pool"
            get_user_defined_k8s_config(node.tags)
    assert tagged <= sum(1 for n in defs.resolve_implicit_global_asset_job_def().graph.node_defs if n.pool == "gpu")


@pytest.mark.parametrize("target", [["-m", "visit_assets.definitions"], ["-f", "deploy/k8s/definitions.py"]],
                         ids=["laptop-module", "cluster-file"])
def test_dagster_definitions_validate_with_cluster_settings(tmp_path, target):
    dagster_cli = Path(sys.executable).parent / "dagster"
    env = {**os.environ, **_cluster_env(tmp_path), "DAGSTER_HOME": str(tmp_path / "dagster_home")}
    (tmp_path / "dagster_home").mkdir()
    out = subprocess.run([str(dagster_cli), "definitions", "validate", *target, "-d", str(ROOT)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "Validation successful" in out.stdout + out.stderr


# -- the page and the image ------------------------------------------------------------------------

def test_doc_names_every_profile_file_and_only_existing_paths():
    text = DOC.read_text()
    for path in K8S.iterdir():
        if path.is_file():
            assert f"deploy/k8s/{path.name}" in text, f"docs/deploy-k8s.md does not mention deploy/k8s/{path.name}"
    for ref in set(re.findall(r"(?:deploy/k8s|visit_assets|tests|docs)/[A-Za-z0-9_./-]*[A-Za-z0-9_]", text)):
        if ref.endswith("visit-assets.env"):  # the user's edited copy, by design not in the repository
            continue
        assert (ROOT / ref).exists(), f"docs/deploy-k8s.md names {ref}, which does not exist"
    limit = _instance()["concurrency"]["pools"]["default_limit"]
    assert f"default_limit: {limit}" in text and f"= {limit}" in text


def test_image_and_chart_versions_match_the_installed_dagster():
    dockerfile = (K8S / "Dockerfile").read_text()
    assert f"ARG DAGSTER_VERSION={dg.__version__}" in dockerfile
    assert f"ARG DAGSTER_LIBS_VERSION={dagster_k8s.__version__}" in dockerfile
    assert dagster_postgres.__version__ == dagster_k8s.__version__
    for copied in ("visit_assets", "deploy/k8s", "pyproject.toml"):
        assert re.search(rf"^COPY .*\b{re.escape(copied)}\b", dockerfile, re.M), copied
        assert (ROOT / copied).exists()
    assert f"--version {dg.__version__}" in DOC.read_text()
    assert f"--version {dg.__version__}" in (K8S / "values-dagster.yaml").read_text()
