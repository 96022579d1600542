"""INT8 models for CPU serving: ONNX Runtime static quantization, judged on real validation frames.

QDQ format, weights int8 per channel and activations uint8 (the U8S8 pair AVX-512 VNNI and AMX run
natively), activation ranges calibrated on training frames through serving's preprocessing. A quantized
model is published only if its mean Dice on the validation split, at original resolution through the
serving path (polyp_train.evaluate), is within `MAX_DICE_LOSS` of the fp32 model's on every dataset.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from polyp_core.preprocess import preprocess
from polyp_core.repository import INPUT_NAME

from .data import Sample

MAX_DICE_LOSS = 0.01
CALIBRATION_FRAMES = 32


@dataclass(frozen=True)
class QuantizedCandidate:
    onnx: bytes
    dice_fp32: dict[str, float]  # per dataset: mean over its validation images, at original resolution
    dice_int8: dict[str, float]

    @property
    def accepted(self) -> bool:
        return all(self.dice_fp32[name] - self.dice_int8[name] <= MAX_DICE_LOSS for name in self.dice_fp32)

    def verdict(self) -> str:
        scores = ", ".join(
            f"{name} INT8 {self.dice_int8[name]:.4f} vs fp32 {self.dice_fp32[name]:.4f}" for name in sorted(self.dice_fp32)
        )
        relation = "within" if self.accepted else "not within"
        return f"validation mean Dice {scores}: {relation} {MAX_DICE_LOSS} of fp32"


def calibration_inputs(samples: list[Sample], size: int, limit: int = CALIBRATION_FRAMES) -> list[np.ndarray]:
    """Training frames as the model sees them in serving (letterbox, ImageNet normalisation), one per batch."""
    from PIL import Image

    step = max(1, len(samples) // limit)  # spread over the set (and its datasets), not its first frames
    inputs = []
    for sample in samples[::step][:limit]:
        with Image.open(sample.image) as image:
            inputs.append(preprocess(image, size)[0][None])
    return inputs


def quantize_int8(onnx_bytes: bytes, calibration: list[np.ndarray]) -> bytes:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not calibration:
        raise ValueError("INT8 calibration needs at least one frame")

    class Frames(CalibrationDataReader):
        def __init__(self):
            self._items = iter(calibration)

        def get_next(self):
            batch = next(self._items, None)
            return None if batch is None else {INPUT_NAME: batch}

    with tempfile.TemporaryDirectory(prefix="polyp-int8-") as tmp:
        fp32, prepared, int8 = (Path(tmp) / name for name in ("fp32.onnx", "prepared.onnx", "int8.onnx"))
        fp32.write_bytes(onnx_bytes)
        quant_pre_process(str(fp32), str(prepared))  # shape inference and graph folding quantize better
        quantize_static(
            str(prepared),
            str(int8),
            Frames(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )
        return int8.read_bytes()


def quantized_candidate(onnx_bytes: bytes, size: int, train: list[Sample], val: list[Sample]) -> QuantizedCandidate:
    """Quantize, then score fp32 and INT8 on the same validation frames through the serving path."""
    from .evaluate import ModelUnderTest, evaluate

    int8 = quantize_int8(onnx_bytes, calibration_inputs(train, size))
    with tempfile.TemporaryDirectory(prefix="polyp-int8-eval-") as tmp:
        scores = {}
        for name, data in (("fp32", onnx_bytes), ("int8", int8)):
            path = Path(tmp) / f"{name}.onnx"
            path.write_bytes(data)
            metrics, _, _ = evaluate(ModelUnderTest(path, name), val)
            scores[name] = {dataset: found["mean_dice"] for dataset, found in metrics.items()}
    return QuantizedCandidate(int8, scores["fp32"], scores["int8"])
