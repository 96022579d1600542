"""Uploads: what is accepted, and the clear error for everything else."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

import polyp_fixtures
from polyp_core.preprocess import Letterbox, preprocess
from polyp_inference.errors import ImageTooLarge, UndecodableImage, UnsupportedMediaType
from polyp_inference.image import decode
from polyp_inference.postprocess import segment


def encoded(size=(40, 30), fmt="PNG", mode="RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, 128).save(out, format=fmt)
    return out.getvalue()


@pytest.mark.parametrize("content_type, fmt", [("image/png", "PNG"), ("image/jpeg", "JPEG"), ("image/jpeg; q=1", "JPEG")])
def test_jpeg_and_png_decode_to_rgb(content_type, fmt):
    image, width, height = decode(encoded(fmt=fmt, mode="L"), content_type)
    assert image.mode == "RGB" and image.size == (width, height) == (40, 30)


def test_a_jpeg_reduced_on_decode_keeps_its_geometry_and_nearly_its_pixels():
    """Serving decodes a 622x529 frame at half scale for a 256 px model: same letterbox, close inputs."""
    data = sorted((polyp_fixtures.path("samples/kvasir-seg") / "images").glob("*.jpg"))[0].read_bytes()
    full, reduced = decode(data, "image/jpeg"), decode(data, "image/jpeg", reduce_for=256)
    assert (reduced.width, reduced.height) == (full.width, full.height) == full.image.size
    assert reduced.image.width < full.width and min(reduced.image.size) >= 256  # decoded small, still covering
    (full_input, full_box), (reduced_input, reduced_box) = (
        preprocess(full.image, 256),
        preprocess(reduced.image, 256, (reduced.width, reduced.height)),
    )
    assert reduced_box == full_box
    assert np.abs(full_input - reduced_input).mean() < 0.05  # ImageNet-normalised units (one grey level is ~0.017)
    assert decode(encoded(fmt="PNG"), "image/png", reduce_for=8).image.size == (40, 30)  # PNG has no reduced decode


@pytest.mark.parametrize("content_type", ["image/gif", "text/plain", "", None])
def test_other_media_types_are_415(content_type):
    with pytest.raises(UnsupportedMediaType, match="send image/jpeg or image/png"):
        decode(encoded(), content_type)


def test_more_bytes_than_the_limit_is_413():
    data = encoded()
    with pytest.raises(ImageTooLarge, match=f"image is {len(data)} bytes; the limit is {len(data) - 1} bytes"):
        decode(data, "image/png", max_bytes=len(data) - 1)
    assert decode(data, "image/png", max_bytes=len(data)).image.size == (40, 30)


@pytest.mark.parametrize("side", [9000, 10_000, 14_000])  # 81 MP; 100 MP (past Pillow's own bomb limit); 196 MP
def test_a_decompression_bomb_is_413_not_decoded(side):
    bomb = encoded(size=(side, side), mode="L")  # megapixels of one grey compress to a few kB
    assert len(bomb) < 500_000
    with pytest.raises(ImageTooLarge, match=rf"{side}x{side}|\({side * side} pixels\)"):
        decode(bomb, "image/png")


@pytest.mark.parametrize(
    "data, content_type",
    [
        (b"not an image at all", "image/png"),
        (encoded(fmt="PNG"), "image/jpeg"),  # a PNG labelled as JPEG
        (encoded(fmt="JPEG")[:200], "image/jpeg"),  # truncated
        (b"", "image/png"),
    ],
)
def test_undecodable_uploads_are_422(data, content_type):
    with pytest.raises(UndecodableImage):
        decode(data, content_type)


def test_segment_restores_original_size_and_boxes_each_polyp():
    box = Letterbox.for_shape(height=50, width=100, size=64)  # letterboxed: 32 rows of image, padded top and bottom
    logits = np.full((64, 64), -10.0, dtype=np.float32)
    logits[box.top + 4 : box.top + 12, 8:24] = 10.0  # polyp 1: 8 x 16 model pixels
    logits[box.top + 20 : box.top + 24, 40:44] = 10.0  # polyp 2: 4 x 4
    result = segment(logits, box)
    assert result.mask.shape == (50, 100) and set(np.unique(result.mask)) == {0, 255}
    big, small = result.boxes
    assert (big.x, big.y, big.width, big.height) == pytest.approx((12.5, 6.25, 25, 12.5), abs=2)
    assert (small.x, small.y, small.width, small.height) == pytest.approx((62.5, 31.25, 6.25, 6.25), abs=2)
    assert result.area_fraction == pytest.approx(big.area_fraction + small.area_fraction)
    assert result.area_fraction == pytest.approx((25 * 12.5 + 6.25 * 6.25) / 5000, rel=0.15)
    png = Image.open(io.BytesIO(result.mask_png()))
    assert png.size == (100, 50) and png.mode == "L"
    assert np.array_equal(np.asarray(png), result.mask)  # lossless, every pixel 0 or 255
    Image.open(io.BytesIO(result.mask_png())).verify()  # chunk CRCs and structure, by Pillow's own reader


def test_regions_below_the_minimum_area_get_no_box_but_stay_in_the_mask():
    box = Letterbox.for_shape(height=64, width=64, size=64)
    logits = np.full((64, 64), -10.0, dtype=np.float32)
    logits[4:20, 4:20] = 10.0  # 256 px: 6.25 % of the image
    logits[40:42, 40:42] = 10.0  # 4 px: 0.1 %, speckle
    everything = segment(logits, box)
    assert len(everything.boxes) == 2
    filtered = segment(logits, box, min_area=0.01)
    assert [(b.width, b.height) for b in filtered.boxes] == [(16, 16)]
    assert filtered.area_fraction == everything.area_fraction == pytest.approx(260 / 4096)
    assert np.array_equal(filtered.mask, everything.mask)
    assert segment(logits, box, with_boxes=False).boxes == []


def test_no_polyp_gives_no_boxes():
    result = segment(np.full((32, 32), -5.0, dtype=np.float32), Letterbox.for_shape(32, 32, 32))
    assert result.boxes == [] and result.area_fraction == 0.0
