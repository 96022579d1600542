"""The one image transform shared by training and serving.

Resize policy: *letterbox*. The longer side is scaled to ``size`` keeping the aspect ratio,
and the shorter side is padded with black (the colour of an endoscope's vignette) to a
``size`` x ``size`` square, centred. Masks take the same transform with nearest-neighbour
resampling. Serving inverts it: crop the padding from the predicted mask, then resize it to
the original image size. Inputs are RGB, scaled to [0, 1] and normalised with the ImageNet
mean and standard deviation, laid out CHW as float32.

Only numpy and Pillow here, so a serving process needs no torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
# (v / 255 - mean) / std as one multiply-add per channel: serving's per-request cost, a sixth of the plain formula
_SCALE = (1.0 / (255.0 * STD)).astype(np.float32)
_OFFSET = (-MEAN / STD).astype(np.float32)
MASK_THRESHOLD = 127  # Kvasir-SEG masks are JPEGs: anything brighter than mid-grey is polyp


@dataclass(frozen=True)
class Letterbox:
    """Where the original image sits inside the square model input."""

    size: int
    original_height: int
    original_width: int
    scaled_height: int
    scaled_width: int
    top: int
    left: int

    @classmethod
    def for_shape(cls, height: int, width: int, size: int) -> Letterbox:
        scale = size / max(height, width)
        scaled_h, scaled_w = max(1, round(height * scale)), max(1, round(width * scale))
        return cls(size, height, width, scaled_h, scaled_w, (size - scaled_h) // 2, (size - scaled_w) // 2)


def _place(resized: Image.Image, box: Letterbox, mode: str) -> np.ndarray:
    canvas = Image.new(mode, (box.size, box.size))
    canvas.paste(resized, (box.left, box.top))
    return np.asarray(canvas)


def reduce_on_decode(image: Image.Image, size: int) -> None:
    """Let a JPEG not decoded yet decode at the smallest DCT scale (1/2, 1/4, 1/8) still covering size x size:
    a fraction of a full decode, and less to resize after. The letterbox geometry stays the original's
    (pass the original size to preprocess). PNGs and loaded images are left as they are."""
    if image.format == "JPEG":
        image.draft("RGB", (size, size))


def letterbox_image(image: Image.Image, size: int, original_size: tuple[int, int] | None = None) -> tuple[np.ndarray, Letterbox]:
    """RGB image -> (size x size x 3 uint8, its Letterbox). original_size (width, height): the size the
    image had before a reduced decode; the Letterbox maps the model input back to it."""
    image = image.convert("RGB")
    width, height = original_size or image.size
    box = Letterbox.for_shape(height, width, size)
    resized = image.resize((box.scaled_width, box.scaled_height), Image.Resampling.BILINEAR)
    return _place(resized, box, "RGB"), box


def binary_mask(mask: Image.Image) -> Image.Image:
    """A mask image (grey or 3-channel JPEG) as a 0/255 single-channel image."""
    return mask.convert("L").point(lambda v: 255 if v > MASK_THRESHOLD else 0)


def letterbox_mask(mask: Image.Image, size: int) -> np.ndarray:
    """Mask image -> size x size uint8 array of 0/1, aligned with letterbox_image."""
    mask = binary_mask(mask)
    box = Letterbox.for_shape(mask.height, mask.width, size)
    resized = mask.resize((box.scaled_width, box.scaled_height), Image.Resampling.NEAREST)
    return (_place(resized, box, "L") > MASK_THRESHOLD).astype(np.uint8)


def normalize(pixels: np.ndarray) -> np.ndarray:
    """H x W x 3 uint8 -> 3 x H x W float32, ImageNet-normalised."""
    out = np.empty((3, *pixels.shape[:2]), dtype=np.float32)
    for channel in range(3):
        np.multiply(pixels[:, :, channel], _SCALE[channel], out=out[channel], casting="unsafe")
        out[channel] += _OFFSET[channel]
    return out


def preprocess(image: Image.Image, size: int, original_size: tuple[int, int] | None = None) -> tuple[np.ndarray, Letterbox]:
    """Image -> (model input 3 x size x size float32, Letterbox to undo it); original_size as letterbox_image."""
    pixels, box = letterbox_image(image, size, original_size)
    return normalize(pixels), box


def restore_mask(probabilities: np.ndarray, box: Letterbox, threshold: float = 0.5) -> np.ndarray:
    """size x size probabilities -> original-size uint8 mask of 0/255."""
    crop = probabilities[box.top : box.top + box.scaled_height, box.left : box.left + box.scaled_width]
    resized = Image.fromarray(crop.astype(np.float32), mode="F").resize(
        (box.original_width, box.original_height), Image.Resampling.BILINEAR
    )
    return (np.asarray(resized) >= threshold).view(np.uint8) * np.uint8(255)
