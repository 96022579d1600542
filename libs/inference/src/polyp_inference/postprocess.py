"""Model logits -> what a user sees: a mask at the original size, the polyp area, one box per polyp.

Connected regions smaller than ``min_area`` (a share of the image) get no box: they are speckle, not
polyps (an untrained model's mask of a 622x529 frame had 89 regions, 80 of them under 100 pixels).
The mask and its area are the model's, unfiltered.
"""

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
        # A two-valued mask compresses nearly as well at level 1 as at the default 6, in a third of the time.
        Image.fromarray(self.mask, mode="L").save(out, format="PNG", optimize=False, compress_level=1)
        return out.getvalue()


DEFAULT_MIN_AREA = 0.001  # 0.1 % of the image: 329 pixels of a 622x529 Kvasir-SEG frame


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(logits, -50, 50)))


def segment(logits: np.ndarray, box: Letterbox, threshold: float = 0.5, min_area: float = 0.0,
            with_boxes: bool = True) -> Segmentation:
    """logits: size x size for one image. Boxes for regions of at least min_area of the image (if asked)."""
    mask = restore_mask(sigmoid(logits.astype(np.float32)), box, threshold)
    polyp = mask > 0
    return Segmentation(mask, float(polyp.mean()), region_boxes(polyp, min_area) if with_boxes else [])


def region_boxes(polyp: np.ndarray, min_area: float) -> list[Box]:
    """One box per connected region of at least min_area of the image, largest first."""
    labels, _ = ndimage.label(polyp)
    smallest = min_area * polyp.size
    boxes = []
    for index, (rows, cols) in enumerate(ndimage.find_objects(labels), start=1):
        if (rows.stop - rows.start) * (cols.stop - cols.start) < smallest:
            continue  # its box is already too small to hold enough pixels: most speckle stops here, uncounted
        pixels = int(np.count_nonzero(labels[rows, cols] == index))
        if pixels >= smallest:
            boxes.append(Box(cols.start, rows.start, cols.stop - cols.start, rows.stop - rows.start, pixels / polyp.size))
    boxes.sort(key=lambda b: b.area_fraction, reverse=True)
    return boxes
