"""Polyp-like synthetic data for demos and tests: textured mucosa with elliptical lesions.

Each frame has a pink-to-red mucosa with low-frequency shading, fine texture and a few dark
vessels, inside a black endoscope vignette; one to three lesions of varied size, colour,
rotation and sharpness; masks are 0/255 PNGs of the same stem (Kvasir-SEG layout).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    coarse = rng.random((cells, cells)).astype(np.float32)
    image = Image.fromarray((coarse * 255).astype(np.uint8)).resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(image, dtype=np.float32) / 255.0


def make_frame(rng: np.random.Generator, size: int) -> tuple[Image.Image, Image.Image]:
    base = np.array([205, 95, 85], dtype=np.float32) + rng.normal(0, 12, 3)
    shading = 0.65 + 0.5 * _smooth_noise(rng, size, 4)
    texture = 0.9 + 0.2 * _smooth_noise(rng, size, 32)
    pixels = base[None, None, :] * (shading * texture)[..., None] + rng.normal(0, 4, (size, size, 3))
    frame = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))

    draw = ImageDraw.Draw(frame)
    for _ in range(rng.integers(2, 6)):  # vessels
        points = [tuple(rng.integers(0, size, 2).tolist()) for _ in range(4)]
        draw.line(points, fill=(150, 40, 50), width=int(rng.integers(1, 3)))

    mask = Image.new("L", (size, size), 0)
    for _ in range(rng.integers(1, 4)):  # lesions
        rx, ry = rng.uniform(0.06, 0.22, 2) * size
        cx, cy = rng.uniform(0.25, 0.75, 2) * size
        lesion = Image.new("L", (size, size), 0)
        ImageDraw.Draw(lesion).ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=255)
        lesion = lesion.rotate(float(rng.uniform(0, 180)), center=(cx, cy))
        colour = np.array([225, 140, 120], dtype=np.float32) + rng.normal(0, 20, 3)
        tint = Image.new("RGB", (size, size), tuple(int(c) for c in np.clip(colour, 0, 255)))
        # A soft edge on the image; the mask keeps the hard outline.
        frame = Image.composite(tint, frame, lesion.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 2.5))))
        mask = Image.fromarray(np.maximum(np.asarray(mask), np.asarray(lesion)))

    vignette = Image.new("L", (size, size), 0)
    margin = size * 0.04
    ImageDraw.Draw(vignette).ellipse([-margin, -margin, size + margin, size + margin], fill=255)
    frame = Image.composite(frame, Image.new("RGB", (size, size)), vignette)
    mask = Image.fromarray(np.where(np.asarray(vignette) > 0, np.asarray(mask), 0).astype(np.uint8))
    return frame, mask


def make_dataset(out: Path, n: int, size: int, seed: int = 0) -> Path:
    if n < 1 or size < 16:
        raise ValueError("make-synthetic needs --n >= 1 and --size >= 16")
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        frame, mask = make_frame(rng, size)
        frame.save(out / "images" / f"synthetic-{i:05d}.jpg", quality=92)
        mask.save(out / "masks" / f"synthetic-{i:05d}.png")
    return out
