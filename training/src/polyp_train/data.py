"""Datasets in the Kvasir-SEG layout: ``images/`` and ``masks/`` with the same file stems.

A dataset is a local folder or an S3 prefix (copied to a local cache first). The split into
training and validation is a deterministic function of the stems and the seed, and the
fingerprint is a content hash of every image and mask, recorded with each run.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from polyp_core.preprocess import letterbox_image, letterbox_mask

from . import storage
from .errors import DatasetError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"}


@dataclass(frozen=True)
class Sample:
    stem: str
    image: Path
    mask: Path


def _by_stem(folder: Path) -> dict[str, Path]:
    files = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
            if path.stem in files:
                raise DatasetError(f"{folder}: two files for {path.stem!r} ({files[path.stem].name}, {path.name})")
            files[path.stem] = path
    return files


def discover(root: Path) -> list[Sample]:
    """Pair images with masks; any missing folder, mask or image is a DatasetError naming it."""
    root = Path(root)
    for sub in ("images", "masks"):
        if not (root / sub).is_dir():
            raise DatasetError(f"{root} has no {sub}/ folder (expected the Kvasir-SEG layout: images/ and masks/)")
    images, masks = _by_stem(root / "images"), _by_stem(root / "masks")
    if not images:
        raise DatasetError(f"{root}/images holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    missing = sorted(set(images) - set(masks))
    if missing:
        shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
        raise DatasetError(f"{len(missing)} image(s) have no mask in {root}/masks: {shown}")
    orphans = sorted(set(masks) - set(images))
    if orphans:
        raise DatasetError(f"{len(orphans)} mask(s) have no image in {root}/images: {', '.join(orphans[:10])}")
    return [Sample(stem, images[stem], masks[stem]) for stem in sorted(images)]


def check_readable(samples: list[Sample]) -> None:
    """Open every file once before training so a bad file fails the run at the start, by name."""
    bad = []
    for sample in samples:
        for path in (sample.image, sample.mask):
            try:
                with Image.open(path) as image:
                    image.verify()
            except (UnidentifiedImageError, OSError, SyntaxError) as exc:
                bad.append(f"{path.name} ({exc.__class__.__name__})")
    if bad:
        raise DatasetError(f"{len(bad)} unreadable file(s): {', '.join(bad[:10])}")


def fingerprint(samples: list[Sample]) -> str:
    """sha256 over every (stem, image bytes, mask bytes), in stem order."""
    digest = hashlib.sha256()
    for sample in samples:
        digest.update(sample.stem.encode())
        digest.update(hashlib.sha256(sample.image.read_bytes()).digest())
        digest.update(hashlib.sha256(sample.mask.read_bytes()).digest())
    return digest.hexdigest()


def split(samples: list[Sample], val_fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """Deterministic by seed and stems; at least one sample on each side."""
    if len(samples) < 2:
        raise DatasetError(f"need at least 2 image/mask pairs to split into training and validation, got {len(samples)}")
    order = sorted(samples, key=lambda s: s.stem)
    random.Random(seed).shuffle(order)
    n_val = min(len(order) - 1, max(1, round(len(order) * val_fraction)))
    return order[n_val:], order[:n_val]


def load_pair(sample: Sample, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(size x size x 3 uint8 image, size x size 0/1 mask), letterboxed."""
    try:
        with Image.open(sample.image) as image, Image.open(sample.mask) as mask:
            pixels, _ = letterbox_image(image, size)
            return pixels, letterbox_mask(mask, size)
    except (UnidentifiedImageError, OSError) as exc:
        raise DatasetError(f"cannot read {sample.stem}: {exc}") from exc


def materialize(uri: str, cache_root: Path) -> Path:
    """A local folder holding the dataset: the folder itself, or a cached copy of the S3 prefix."""
    if storage.is_s3(uri):
        return storage.download_prefix(uri, cache_root)
    path = Path(uri)
    if not path.is_dir():
        raise DatasetError(f"dataset folder {uri} does not exist")
    return path
