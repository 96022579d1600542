"""The segmentation network: segmentation-models-pytorch, configurable architecture and encoder."""

from __future__ import annotations

from dataclasses import asdict, dataclass

INPUT_NAME = "image"
OUTPUT_NAME = "logits"


@dataclass(frozen=True)
class ModelSpec:
    arch: str = "Unet"
    encoder: str = "resnet34"
    size: int = 256  # square letterboxed input (see preprocess)

    def as_dict(self) -> dict:
        return asdict(self)


def build_model(spec: ModelSpec):
    """One output channel of logits; weights start random (nothing can be downloaded)."""
    import segmentation_models_pytorch as smp

    try:
        return smp.create_model(spec.arch, encoder_name=spec.encoder, encoder_weights=None, in_channels=3, classes=1)
    except (KeyError, ValueError) as exc:
        raise ValueError(f"cannot build {spec.arch} with encoder {spec.encoder}: {exc}") from exc
