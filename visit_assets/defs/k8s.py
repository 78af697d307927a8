"""Kubernetes op tags: which steps get a GPU in their pod on the cluster profile (docs/deploy-k8s.md).

`dagster-k8s/config` op tags are read only by dagster-k8s's `k8s_job_executor` (one pod per step,
used by the cluster code location `deploy/k8s/definitions.py`). Every other executor, the local
one included, ignores them, so tagging an asset changes nothing on a laptop.

    @dg.asset(..., pool="gpu", op_tags=GPU_OP_TAGS)

The tag asks the step's container for `nvidia.com/gpu` (requests = limits: Kubernetes does not
overcommit GPUs) and tolerates the usual `nvidia.com/gpu` taint of GPU nodes; a node selector is
provider-specific, so it is only added when given, e.g.
`gpu_op_tags(node_selector={"cloud.google.com/gke-accelerator": "nvidia-l4"})`.
The schema is dagster-k8s's USER_DEFINED_K8S_CONFIG_KEY / UserDefinedDagsterK8sConfig (snake_case
Kubernetes field names); tests/test_k8s_profile.py checks it against the installed dagster-k8s.
This module imports nothing from dagster-k8s, which is only installed with the `k8s` extra.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

K8S_CONFIG_TAG = "dagster-k8s/config"  # dagster_k8s.job.USER_DEFINED_K8S_CONFIG_KEY
GPU_RESOURCE = "nvidia.com/gpu"  # the NVIDIA device plugin's extended resource
GPU_TOLERATION = {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}


def gpu_op_tags(gpus: int = 1, node_selector: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Op tags giving the step's pod `gpus` GPUs (plus the GPU-taint toleration and an optional node selector)."""
    if isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 1:
        raise ValueError(f"gpus must be a positive integer, got {gpus!r}")
    quantity = {GPU_RESOURCE: str(gpus)}
    pod_spec: dict[str, Any] = {"tolerations": [dict(GPU_TOLERATION)]}
    if node_selector:
        pod_spec["node_selector"] = {str(k): str(v) for k, v in node_selector.items()}
    return {
        K8S_CONFIG_TAG: {
            "container_config": {"resources": {"requests": dict(quantity), "limits": dict(quantity)}},
            "pod_spec_config": pod_spec,
        }
    }


GPU_OP_TAGS = gpu_op_tags()
