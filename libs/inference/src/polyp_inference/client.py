"""The inference client the control service's POST /predict and polyp-smoke use."""

from __future__ import annotations

import asyncio
import base64
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from polyp_core.preprocess import preprocess

from .backends import OnnxRuntimeBackend, TritonBackend
from .errors import ModelChanged
from .image import MAX_BYTES, decode, load, open_upload
from .postprocess import DEFAULT_MIN_AREA, Box, segment
from .rayserve import RayServeBackend

Output = Literal["mask", "boxes"]
OUTPUTS: tuple[Output, ...] = ("mask", "boxes")  # what a prediction can carry besides its area; a client may ask for less


@dataclass
class Prediction:
    model: str
    version: str
    width: int
    height: int
    area_fraction: float
    boxes: list[Box] | None  # None: not asked for
    mask_png: bytes | None = field(repr=False)
    latency_ms: float

    def as_json(self) -> dict:
        """The JSON body /predict answers with; the mask travels as base64 PNG (null when not asked for)."""
        return {
            "model": self.model,
            "version": self.version,
            "width": self.width,
            "height": self.height,
            "area_fraction": self.area_fraction,
            "boxes": None if self.boxes is None else [vars(box) for box in self.boxes],
            "latency_ms": self.latency_ms,
            "mask_png_base64": None if self.mask_png is None else base64.b64encode(self.mask_png).decode(),
        }


BACKENDS = ("onnxruntime", "triton", "rayserve")


Backend = OnnxRuntimeBackend | TritonBackend | RayServeBackend


def make_backend(
    model: str, url: str | None, repo: str | Path, timeout_s: float = 10.0, version: int | None = None, kind: str | None = None
) -> Backend:
    """`kind` (default: triton when a url is given, else onnxruntime): in-process ONNX Runtime over the local
    repository, Triton (KServe in a cluster) or a Ray Serve application at `url`; `version` pins the served
    version (None: the newest)."""
    kind = kind or ("triton" if url else "onnxruntime")
    if kind not in BACKENDS:
        raise ValueError(f"unknown inference backend {kind!r}: one of {', '.join(BACKENDS)}")
    if kind == "onnxruntime":
        return OnnxRuntimeBackend(repo, model, version=version)
    if not url:
        raise ValueError(f"the {kind} backend needs its URL (INFERENCE_URL)")
    if kind == "triton":
        return TritonBackend(url, model, timeout_s=timeout_s, version=version)
    return RayServeBackend(url, model, timeout_s=timeout_s, version=version)


class InferenceClient:
    def __init__(self, backend: Backend, max_bytes: int = MAX_BYTES, threshold: float = 0.5):
        self.backend, self.max_bytes, self.threshold = backend, max_bytes, threshold

    async def predict(
        self,
        data: bytes,
        content_type: str | None,
        outputs: frozenset[str] = frozenset(OUTPUTS),
        min_area: float = DEFAULT_MIN_AREA,
    ) -> Prediction:
        """Segment one upload; `outputs` names what to return (the area always comes), `min_area` the
        smallest region (share of the image) that gets a box."""
        # Decoding, resizing, labelling and PNG encoding are CPU work: each runs in a worker thread, never on the
        # event loop, so a large upload cannot stall the other requests (alert streams included).
        started = time.perf_counter()
        opened = await asyncio.to_thread(open_upload, data, content_type, self.max_bytes)  # a bad upload: 4xx, always
        info = await self.backend.model_info()
        upload = await asyncio.to_thread(load, opened, info.size)
        original = (upload.width, upload.height)
        try:
            pixels, box = await asyncio.to_thread(preprocess, upload.image, info.size, original)
            logits, version = await self.backend.infer(pixels[None], info)
        except ModelChanged:  # the newest version expects another size: prepare the image again, once
            info = await self.backend.model_info(refresh=True)
            upload = await asyncio.to_thread(decode, data, content_type, self.max_bytes, info.size)
            pixels, box = await asyncio.to_thread(preprocess, upload.image, info.size, original)
            logits, version = await self.backend.infer(pixels[None], info)

        def answer() -> Prediction:
            result = segment(np.asarray(logits)[0, 0], box, self.threshold, min_area, with_boxes="boxes" in outputs)
            return Prediction(
                info.name,
                version,
                upload.width,
                upload.height,
                result.area_fraction,
                result.boxes if "boxes" in outputs else None,
                result.mask_png() if "mask" in outputs else None,
                (time.perf_counter() - started) * 1000,
            )

        return await asyncio.to_thread(answer)

    async def ready(self) -> bool:
        return await self.backend.ready()

    async def close(self) -> None:
        await self.backend.close()
