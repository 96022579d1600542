"""The segmentation network: segmentation-models-pytorch, configurable architecture and encoder."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from polyp_core.job import DEFAULTS

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class ModelSpec:
    arch: str = DEFAULTS.arch
    encoder: str = DEFAULTS.encoder
    size: int = DEFAULTS.size  # square letterboxed input (see polyp_core.preprocess)

    @property
    def architecture(self) -> str:
        return f"{self.arch}/{self.encoder}"

    def as_dict(self) -> dict:
        return asdict(self)


def build_model(spec: ModelSpec) -> torch.nn.Module:
    """One output channel of logits; weights start random (nothing can be downloaded)."""
    import segmentation_models_pytorch as smp

    try:
        return smp.create_model(spec.arch, encoder_name=spec.encoder, encoder_weights=None, in_channels=3, classes=1)
    except (KeyError, ValueError) as exc:
        raise ValueError(f"cannot build {spec.arch} with encoder {spec.encoder}: {exc}") from exc
