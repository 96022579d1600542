"""Datasets, the shared preprocessing, and synthetic data."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest
from PIL import Image

from polyp_core.preprocess import Letterbox, letterbox_image, letterbox_mask, preprocess, restore_mask
from polyp_train import data
from polyp_train.errors import DatasetError


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_discover_pairs_by_stem_and_splits_deterministically(synthetic):
    samples = data.discover(synthetic)
    assert len(samples) == 12 and all(s.image.stem == s.mask.stem for s in samples)
    train1, val1 = data.split(samples, 0.25, seed=7)
    train2, val2 = data.split(list(reversed(samples)), 0.25, seed=7)
    assert [s.stem for s in val1] == [s.stem for s in val2] and len(val1) == 3 and len(train1) == 9
    assert {s.stem for s in data.split(samples, 0.25, seed=8)[1]} != {s.stem for s in val1}
    assert not {s.stem for s in train1} & {s.stem for s in val1}


def test_fingerprint_follows_content(synthetic, tmp_path):
    copy = _copy(synthetic, tmp_path / "copy")
    assert data.fingerprint(data.discover(copy)) == data.fingerprint(data.discover(synthetic))
    mask = copy / "masks" / "synthetic-00000.png"
    pixels = np.asarray(Image.open(mask)).copy()
    pixels[0, 0] = 255 - pixels[0, 0]
    Image.fromarray(pixels).save(mask)
    assert data.fingerprint(data.discover(copy)) != data.fingerprint(data.discover(synthetic))


@pytest.mark.parametrize("breakage, message", [
    (lambda d: shutil.rmtree(d / "masks"), "has no masks/ folder"),
    (lambda d: (d / "masks" / "synthetic-00003.png").unlink(), "1 image(s) have no mask"),
    (lambda d: [p.unlink() for p in (d / "images").iterdir()], "holds no images"),
])
def test_bad_datasets_are_named_clearly(synthetic, tmp_path, breakage, message):
    broken = _copy(synthetic, tmp_path / "broken")
    breakage(broken)
    with pytest.raises(DatasetError, match=re.escape(message)):
        data.discover(broken)


def test_unreadable_image_is_found_before_training(synthetic, tmp_path):
    broken = _copy(synthetic, tmp_path / "broken")
    (broken / "images" / "synthetic-00005.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DatasetError, match="synthetic-00005.jpg"):
        data.check_readable(data.discover(broken))


def test_letterbox_keeps_aspect_and_pads_centred():
    box = Letterbox.for_shape(529, 622, 256)
    assert (box.scaled_width, box.scaled_height) == (256, 218) and (box.top, box.left) == (19, 0)
    image = Image.new("RGB", (622, 529), (200, 100, 50))
    pixels, _ = letterbox_image(image, 256)
    assert pixels.shape == (256, 256, 3)
    assert (pixels[:19] == 0).all() and (pixels[19 + 218:] == 0).all() and (pixels[128, 128] == (200, 100, 50)).all()


def test_real_frames_roundtrip_to_their_original_size(kvasir_samples):
    """The five Kvasir-SEG frames: odd sizes, 3-channel JPEG masks."""
    for path in sorted((kvasir_samples / "images").iterdir()):
        image = Image.open(path)
        mask_image = Image.open(kvasir_samples / "masks" / path.name)
        tensor, box = preprocess(image, 256)
        assert tensor.shape == (3, 256, 256) and tensor.dtype == np.float32
        # The letterboxed true mask, restored, matches the original mask closely.
        restored = restore_mask(letterbox_mask(mask_image, 256).astype(np.float32), box)
        assert restored.shape == (image.height, image.width)
        truth = np.asarray(mask_image.convert("L")) > 127
        agreement = ((restored > 0) == truth).mean()
        assert agreement > 0.98, (path.name, agreement)


def test_synthetic_frames_have_lesions_inside_the_vignette(synthetic):
    for sample in data.discover(synthetic)[:4]:
        mask = np.asarray(Image.open(sample.mask))
        assert set(np.unique(mask)) <= {0, 255} and 0.01 < (mask > 0).mean() < 0.6
        assert mask[0, 0] == 0 and mask[-1, -1] == 0
