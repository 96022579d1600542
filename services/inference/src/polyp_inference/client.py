"""The inference client the control service's POST /predict and polyp-smoke use."""

from __future__ import annotations

import base64
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .backends import ModelChanged, OnnxRuntimeBackend, TritonBackend
from .image import MAX_BYTES, decode
from .postprocess import Box, segment
from .preprocess import preprocess

DEFAULT_MODEL = "polyp-segmenter"


@dataclass
class Prediction:
    model: str
    version: str
    width: int
    height: int
    area_fraction: float
    boxes: list[Box]
    mask_png: bytes = field(repr=False)
    latency_ms: float

    def as_json(self) -> dict:
        """The JSON body /predict answers with; the mask travels as base64 PNG."""
        return {
            "model": self.model, "version": self.version, "width": self.width, "height": self.height,
            "area_fraction": self.area_fraction, "boxes": [vars(box) for box in self.boxes],
            "latency_ms": self.latency_ms, "mask_png_base64": base64.b64encode(self.mask_png).decode(),
        }


class InferenceClient:
    def __init__(self, backend: OnnxRuntimeBackend | TritonBackend, max_bytes: int = MAX_BYTES, threshold: float = 0.5):
        self.backend, self.max_bytes, self.threshold = backend, max_bytes, threshold

    @classmethod
    def from_env(cls) -> InferenceClient:
        """POLYP_SERVING_BACKEND=onnxruntime (default, over POLYP_MODEL_REPO) or triton (at POLYP_TRITON_URL)."""
        model = os.environ.get("POLYP_MODEL_NAME", DEFAULT_MODEL)
        kind = os.environ.get("POLYP_SERVING_BACKEND", "onnxruntime")
        if kind == "triton":
            url = os.environ.get("POLYP_TRITON_URL")
            if not url:
                raise ValueError("POLYP_SERVING_BACKEND=triton needs POLYP_TRITON_URL (the InferenceService URL)")
            backend = TritonBackend(url, model, timeout_s=float(os.environ.get("POLYP_TRITON_TIMEOUT_S", "10")))
        elif kind == "onnxruntime":
            home = Path(os.environ.get("POLYP_HOME", ".local"))
            backend = OnnxRuntimeBackend(os.environ.get("POLYP_MODEL_REPO", str(home / "model-repo")), model)
        else:
            raise ValueError(f"POLYP_SERVING_BACKEND must be onnxruntime or triton, got {kind!r}")
        return cls(backend, max_bytes=int(os.environ.get("POLYP_MAX_UPLOAD_BYTES", MAX_BYTES)))

    async def predict(self, data: bytes, content_type: str | None) -> Prediction:
        started = time.perf_counter()
        image = decode(data, content_type, self.max_bytes)
        info = await self.backend.model_info()
        try:
            pixels, box = preprocess(image, info.size)
            logits, version = await self.backend.infer(pixels[None], info)
        except ModelChanged:  # the newest version expects another size: prepare the image again, once
            info = await self.backend.model_info(refresh=True)
            pixels, box = preprocess(image, info.size)
            logits, version = await self.backend.infer(pixels[None], info)
        result = segment(np.asarray(logits)[0, 0], box, self.threshold)
        return Prediction(info.name, version, image.width, image.height, result.area_fraction, result.boxes,
                          result.mask_png(), (time.perf_counter() - started) * 1000)

    async def ready(self) -> bool:
        return await self.backend.ready()

    async def close(self) -> None:
        await self.backend.close()
