"""Training-time augmentations applied identically to an image and its mask."""

from __future__ import annotations

import numpy as np


def augment(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Flips, 90-degree rotations, brightness and contrast jitter (H x W x 3 uint8, H x W)."""
    if rng.random() < 0.5:
        image, mask = image[:, ::-1], mask[:, ::-1]
    if rng.random() < 0.5:
        image, mask = image[::-1], mask[::-1]
    turns = int(rng.integers(0, 4))
    image, mask = np.rot90(image, turns), np.rot90(mask, turns)
    contrast, brightness = rng.uniform(0.8, 1.2), rng.uniform(-20, 20)
    mean = image.mean()
    image = np.clip((image.astype(np.float32) - mean) * contrast + mean + brightness, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(image), np.ascontiguousarray(mask)
