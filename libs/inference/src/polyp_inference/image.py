"""Decode an uploaded image, refusing what is not a JPEG/PNG, too large, or broken."""

from __future__ import annotations

import io
import warnings
from typing import NamedTuple

from PIL import Image, UnidentifiedImageError

from polyp_core.preprocess import reduce_on_decode

from .errors import ImageTooLarge, UndecodableImage, UnsupportedMediaType

SUPPORTED = {"image/jpeg": "JPEG", "image/jpg": "JPEG", "image/png": "PNG"}
MAX_BYTES = 10 * 1024 * 1024
MAX_PIXELS = 40_000_000  # a 4K endoscope frame is 8.3 MP; anything far beyond is a decompression bomb


class Decoded(NamedTuple):
    image: Image.Image  # RGB; a JPEG may be decoded at a reduced scale (reduce_for)
    width: int  # the upload's own size
    height: int


def decode(data: bytes, content_type: str | None, max_bytes: int = MAX_BYTES, reduce_for: int | None = None) -> Decoded:
    """The upload as RGB pixels; with `reduce_for` (the model's input side) a JPEG decodes at the smallest
    DCT scale that still covers it, the same way training and evaluation read frames."""
    media = (content_type or "").split(";")[0].strip().lower()
    if media not in SUPPORTED:
        raise UnsupportedMediaType(f"unsupported media type {media or 'none'!r}: send image/jpeg or image/png")
    if len(data) > max_bytes:
        raise ImageTooLarge(f"image is {len(data)} bytes; the limit is {max_bytes} bytes")
    if not data:
        raise UndecodableImage("the upload is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=[SUPPORTED[media]])
            if image.width * image.height > MAX_PIXELS:
                raise ImageTooLarge(f"image is {image.width}x{image.height}; the limit is {MAX_PIXELS} pixels")
            width, height = image.size
            if reduce_for:
                reduce_on_decode(image, reduce_for)
            image.load()
    except ImageTooLarge:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError,
            Image.DecompressionBombWarning) as exc:
        raise UndecodableImage(f"cannot decode the upload as {media}: {exc}") from exc
    return Decoded(image.convert("RGB"), width, height)
