"""Model logits -> what a user sees: a mask at the original size, the polyp area, one box per polyp."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

from polyp_core.preprocess import Letterbox, restore_mask


@dataclass(frozen=True)
class Box:
    x: int
    y: int
    width: int
    height: int
    area_fraction: float  # of the whole image


@dataclass(frozen=True)
class Segmentation:
    mask: np.ndarray  # original height x width, uint8 0/255
    area_fraction: float
    boxes: list[Box]

    def mask_png(self) -> bytes:
        out = io.BytesIO()
        Image.fromarray(self.mask, mode="L").save(out, format="PNG", optimize=False)
        return out.getvalue()


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(logits, -50, 50)))


def segment(logits: np.ndarray, box: Letterbox, threshold: float = 0.5) -> Segmentation:
    """logits: size x size for one image."""
    mask = restore_mask(sigmoid(logits.astype(np.float32)), box, threshold)
    total = mask.size
    labels, _ = ndimage.label(mask > 0)
    boxes = []
    for index, found in enumerate(ndimage.find_objects(labels), start=1):
        rows, cols = found
        pixels = int((labels[found] == index).sum())
        boxes.append(Box(cols.start, rows.start, cols.stop - cols.start, rows.stop - rows.start, pixels / total))
    boxes.sort(key=lambda b: b.area_fraction, reverse=True)
    return Segmentation(mask, float((mask > 0).sum() / total), boxes)
