"""Model identity recorded on every row a model produced, so lineage names the exact weights."""

from __future__ import annotations

from dataclasses import asdict, dataclass

RANDOM_INIT = "random-init"  # weights were never loaded: scores are meaningless and must say so
UNCONFIGURED = "unconfigured"  # no model configured: the score is absent, not faked
NO_MODEL = "no-model"  # a model-free stand-in (the echo backend): its text is never data
STAND_IN = "stand-in"  # a test instrument that imitates a competent model (visit_assets/lib/standin): its text is never data
NOT_REAL = (RANDOM_INIT, UNCONFIGURED, NO_MODEL, STAND_IN)


@dataclass(frozen=True)
class ModelIdentity:
    """Who made a value: a backend-independent model name plus a hash of the weights used."""

    name: str  # e.g. "SmolLM2-135M-Instruct.Q4_1.gguf", "open_clip:ViT-B-32/laion2b_s34b_b79k"
    weights: str  # sha256 of the weights file(s), or RANDOM_INIT / UNCONFIGURED
    kind: str = ""  # llm | embedder | clip | reward

    @property
    def is_real(self) -> bool:
        return self.weights not in NOT_REAL

    def label(self) -> str:
        return f"{self.name}@{self.weights[:12]}"

    def as_dict(self) -> dict[str, str]:
        return asdict(self)
