"""The cluster code location of the `k8s` profile: the laptop definitions, one Kubernetes pod per step.

The Helm user-code deployment serves this file (deploy/k8s/values-dagster.yaml):

    dagster api grpc --python-file /opt/visit-assets/deploy/k8s/definitions.py --working-directory /opt/visit-assets

It is `visit_assets.definitions.build_defs()` (same assets, sensors, schedules and resources, which
read their settings from the environment: deploy/k8s/visit-assets.env.example) with dagster-k8s's
`k8s_job_executor`, which launches each step as its own Kubernetes Job. That executor is what reads
per-asset `dagster-k8s/config` op tags (visit_assets.defs.k8s.GPU_OP_TAGS: a GPU for that step's
pod); every pod also gets the run launcher's and this code location's env, secrets and volumes.
The laptop location (`visit_assets.definitions`, workspace.yaml) is unchanged and never imports this.
"""

from __future__ import annotations

import dagster as dg
from dagster_k8s import k8s_job_executor

from visit_assets.definitions import build_defs

defs = dg.Definitions.merge(build_defs(), dg.Definitions(executor=k8s_job_executor))
