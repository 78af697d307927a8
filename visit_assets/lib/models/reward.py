"""Reward model: one scalar per (question, answer) pair from an HF sequence-classification checkpoint.

Nothing is loaded by default: with `checkpoint=None` the model is unavailable, its identity says
UNCONFIGURED and `score()` returns None (the score is absent, never a fake zero). The full setup
configures e.g. "OpenAssistant/reward-model-deberta-v3-large-v2" (a hub id: the user's opt-in to a
download) or a local folder holding config + tokenizer + weights (loaded strictly offline).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from visit_assets.lib.models.identity import UNCONFIGURED, ModelIdentity
from visit_assets.lib.models.weights import hub_offline, hub_snapshot_dir, weights_sha256


class RewardModel:
    """Scores (question, answer) pairs with a single-logit sequence-classification model."""

    def __init__(
        self,
        checkpoint: str | None = None,
        device: str = "cpu",
        batch_size: int = 8,
        max_length: int = 512,
        name: str | None = None,
    ) -> None:
        self.checkpoint = checkpoint or None
        self.device = device
        self.batch_size = max(1, int(batch_size))
        self.max_length = int(max_length)
        self._name = name
        self._model: Any = None
        self._tokenizer: Any = None
        self._identity: ModelIdentity | None = None
        self._lock = threading.Lock()

    @property
    def available(self) -> bool:
        return self.checkpoint is not None

    def _local_dir(self) -> Path | None:
        if self.checkpoint is None:
            return None
        p = Path(self.checkpoint).expanduser()
        return p if p.is_dir() else None

    @property
    def name(self) -> str:
        if self._name:
            return self._name
        if self.checkpoint is None:
            return "reward:" + UNCONFIGURED
        local = self._local_dir()
        return local.name if local is not None else self.checkpoint

    @property
    def identity(self) -> ModelIdentity:
        if self._identity is not None:
            return self._identity
        if self.checkpoint is None:
            self._identity = ModelIdentity(self.name, UNCONFIGURED, "reward")
            return self._identity
        folder = self._local_dir() or hub_snapshot_dir(self.checkpoint)
        if folder is None:
            # hub id not downloaded yet: name it; not memoised, the load fills the cache
            return ModelIdentity(self.name, f"hub:{self.checkpoint}", "reward")
        self._identity = ModelIdentity(self.name, weights_sha256(folder), "reward")
        return self._identity

    def _load(self) -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        local = self._local_dir()
        if local is not None:
            with hub_offline():
                tokenizer = AutoTokenizer.from_pretrained(str(local), local_files_only=True)
                model = AutoModelForSequenceClassification.from_pretrained(str(local), local_files_only=True)
        else:  # hub id: the user's explicit opt-in to a download
            tokenizer = AutoTokenizer.from_pretrained(self.checkpoint)
            model = AutoModelForSequenceClassification.from_pretrained(self.checkpoint)
        n_labels = int(getattr(model.config, "num_labels", 1))
        if n_labels != 1:
            raise ValueError(
                f"reward checkpoint {self.checkpoint!r} has {n_labels} labels; a reward model has one logit"
            )
        model.to(self.device).eval()
        self._tokenizer = tokenizer
        self._model = model
        self._identity = None  # a hub snapshot now exists: hash it

    def _ensure_loaded(self) -> None:
        if self._model is None:
            with self._lock:
                if self._model is None:
                    self._load()

    def score(self, questions: Sequence[str], answers: Sequence[str]) -> np.ndarray | None:
        """float32 [N]: the model's logit for each (question, answer) pair; None when unconfigured.

        Pairs are tokenised as tokenizer(question, answer) and truncated to `max_length` tokens.
        They are batched in length order (less padding) and returned in input order.
        """
        if not self.available:
            return None
        questions, answers = [str(q) for q in questions], [str(a) for a in answers]
        if len(questions) != len(answers):
            raise ValueError(f"{len(questions)} questions but {len(answers)} answers")
        if not questions:
            return np.zeros((0,), dtype=np.float32)
        import torch

        self._ensure_loaded()
        order = sorted(range(len(questions)), key=lambda i: len(questions[i]) + len(answers[i]))
        out = np.empty(len(questions), dtype=np.float32)
        with torch.inference_mode():
            for s in range(0, len(order), self.batch_size):
                idx = order[s : s + self.batch_size]
                enc = self._tokenizer(
                    [questions[i] for i in idx],
                    [answers[i] for i in idx],
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                ).to(self.device)
                logits = self._model(**enc).logits
                out[idx] = logits[:, 0].float().cpu().numpy()
        return out

    def __repr__(self) -> str:
        return f"RewardModel(checkpoint={self.checkpoint!r}, device={self.device!r}, loaded={self._model is not None})"
