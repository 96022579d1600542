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


BOMB = (Image.DecompressionBombError, Image.DecompressionBombWarning)  # Pillow's own pixel limit, from the header
DECODE_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, *BOMB)


def open_upload(data: bytes, content_type: str | None, max_bytes: int = MAX_BYTES) -> Image.Image:
    """Check an upload from its header without decoding its pixels: media type, bytes, format, pixel count.
    Cheap, so a bad upload is refused (415/413/422) before anything asks the model server."""
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
    except BOMB as exc:  # far past MAX_PIXELS: too large, whatever else it may be
        raise ImageTooLarge(f"image is larger than the limit of {MAX_PIXELS} pixels: {exc}") from exc
    except DECODE_ERRORS as exc:
        raise UndecodableImage(f"cannot decode the upload as {media}: {exc}") from exc
    if image.width * image.height > MAX_PIXELS:
        raise ImageTooLarge(f"image is {image.width}x{image.height}; the limit is {MAX_PIXELS} pixels")
    return image


def load(image: Image.Image, reduce_for: int | None = None) -> Decoded:
    """An opened upload's pixels as RGB; with `reduce_for` (the model's input side) a JPEG decodes at the
    smallest DCT scale that still covers it, the same way training and evaluation read frames."""
    width, height = image.size
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            if reduce_for:
                reduce_on_decode(image, reduce_for)
            image.load()
    except DECODE_ERRORS as exc:
        raise UndecodableImage(f"cannot decode the upload as {image.format}: {exc}") from exc
    return Decoded(image.convert("RGB"), width, height)


def decode(data: bytes, content_type: str | None, max_bytes: int = MAX_BYTES, reduce_for: int | None = None) -> Decoded:
    """open_upload, then load."""
    return load(open_upload(data, content_type, max_bytes), reduce_for)
