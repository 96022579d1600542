"""Datasets: image/mask pairs in the layouts users have.

- a folder with ``images/`` and ``masks/`` whose files share a stem (Kvasir-SEG, CVC-ClinicDB, ours);
- a folder holding one such folder (the Kvasir-SEG release zip unpacks to ``Kvasir-SEG/``), or that zip;
- a list file: one ``image mask`` pair of paths per line, relative to the list file, ``#`` comments.

A dataset is local or an S3 prefix (copied to a local cache first). A bad pair (missing mask or
image, unreadable file, image and mask of different sizes) fails the run by name, or with
``problems`` given is recorded there and left out. The split lives in ``splits``.
"""

from __future__ import annotations

import hashlib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from polyp_core.preprocess import letterbox_image, letterbox_mask

from . import storage
from .errors import DatasetError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"}
LIST_SUFFIXES = {".txt", ".lst", ".csv"}
LAYOUTS = "images/ and masks/ folders, a folder or .zip holding them, or a list file of 'image mask' lines"


@dataclass(frozen=True)
class Sample:
    stem: str
    image: Path
    mask: Path
    dataset: str = ""


def _report(problems: list[str] | None, found: list[str], what: str) -> None:
    """Bad pairs fail the run, naming them; or, with a problems list, are recorded there."""
    if not found:
        return
    if problems is None:
        shown = ", ".join(found[:10]) + (f" and {len(found) - 10} more" if len(found) > 10 else "")
        raise DatasetError(f"{len(found)} {what}: {shown}")
    problems.extend(f"{item}: {what}" for item in found)


def _by_stem(folder: Path) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
            if path.stem in files:
                raise DatasetError(f"{folder}: two files for {path.stem!r} ({files[path.stem].name}, {path.name})")
            files[path.stem] = path
    return files


def _pair_folder(root: Path) -> Path:
    if (root / "images").is_dir() or (root / "masks").is_dir():
        for sub in ("images", "masks"):
            if not (root / sub).is_dir():
                raise DatasetError(f"{root} has no {sub}/ folder (expected {LAYOUTS})")
        return root
    inner = [child for child in sorted(root.iterdir()) if child.is_dir() and (child / "images").is_dir()]
    if len(inner) == 1:
        return inner[0]
    raise DatasetError(f"{root} has no images/ folder (expected {LAYOUTS})")


def _from_list(list_file: Path) -> list[tuple[str, Path, Path]]:
    pairs = []
    for number, line in enumerate(list_file.read_text().splitlines(), 1):
        fields = line.split("#", 1)[0].replace(",", " ").split()
        if not fields:
            continue
        if len(fields) != 2:
            raise DatasetError(f"{list_file}:{number}: expected 'image mask', got {line.strip()!r}")
        image, mask = (list_file.parent / field for field in fields)
        pairs.append((image.stem, image, mask))
    return pairs


def discover(root: Path, dataset: str = "", problems: list[str] | None = None) -> list[Sample]:
    """Pair images with masks; a missing folder is a DatasetError, a missing file a bad pair."""
    root = Path(root)
    if root.is_file() and root.suffix.lower() in LIST_SUFFIXES:
        listed = _from_list(root)
        missing = [
            f"{image.name} (listed in {root.name})" for _, image, mask in listed if not (image.is_file() and mask.is_file())
        ]
        _report(problems, missing, "listed pair(s) with a missing file")
        pairs = [(stem, image, mask) for stem, image, mask in listed if image.is_file() and mask.is_file()]
    else:
        folder = _pair_folder(root)
        images, masks = _by_stem(folder / "images"), _by_stem(folder / "masks")
        if not images:
            raise DatasetError(f"{folder}/images holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        _report(problems, sorted(set(images) - set(masks)), f"image(s) have no mask in {folder}/masks")
        _report(problems, sorted(set(masks) - set(images)), f"mask(s) have no image in {folder}/images")
        pairs = [(stem, images[stem], masks[stem]) for stem in sorted(set(images) & set(masks))]
    if not pairs:
        raise DatasetError(f"{root}: no image/mask pairs left")
    return [Sample(stem, image, mask, dataset) for stem, image, mask in sorted(pairs)]


def check_pairs(samples: list[Sample], problems: list[str] | None = None) -> list[Sample]:
    """Open every file once before training: unreadable files and image/mask size mismatches are bad pairs."""
    unreadable, mismatched, good = [], [], []
    for sample in samples:
        sizes = []
        for path in (sample.image, sample.mask):
            try:
                with Image.open(path) as image:
                    sizes.append(image.size)
                    image.verify()
            except (UnidentifiedImageError, OSError, SyntaxError) as exc:
                unreadable.append(f"{path.name} ({exc.__class__.__name__})")
        if len(sizes) == 2 and sizes[0] != sizes[1]:
            mismatched.append(f"{sample.stem} (image {sizes[0][0]}x{sizes[0][1]}, mask {sizes[1][0]}x{sizes[1][1]})")
        elif len(sizes) == 2:
            good.append(sample)
    _report(problems, unreadable, "unreadable file(s)")
    _report(problems, mismatched, "pair(s) whose image and mask differ in size")
    return good


def file_digest(path: Path) -> bytes:
    return hashlib.sha256(path.read_bytes()).digest()


def load_pair(sample: Sample, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(size x size x 3 uint8 image, size x size 0/1 mask), letterboxed."""
    try:
        with Image.open(sample.image) as image, Image.open(sample.mask) as mask:
            pixels, _ = letterbox_image(image, size)
            return pixels, letterbox_mask(mask, size)
    except (UnidentifiedImageError, OSError) as exc:  # PIL's message holds the file's path on this node
        raise DatasetError(f"cannot read {sample.stem}: {type(exc).__name__}") from exc


def materialize(uri: str, cache_root: Path) -> Path:
    """The dataset on local disk: the folder or list file itself, a cached copy of the S3 prefix,
    or a zip (a release download) unpacked once into the cache."""
    if storage.is_s3(uri):
        return storage.download_prefix(uri, cache_root)
    path = Path(uri)
    if path.is_file() and path.suffix.lower() == ".zip":
        return _unpacked(path, cache_root)
    if not path.exists():
        raise DatasetError(f"dataset {uri} does not exist (expected {LAYOUTS})")
    return path


def _unpacked(archive: Path, cache_root: Path) -> Path:
    target = cache_root / f"zip-{hashlib.sha256(archive.read_bytes()).hexdigest()[:16]}"
    if not (target / ".complete").exists():
        try:
            with zipfile.ZipFile(archive) as bundle:
                bundle.extractall(target)
        except zipfile.BadZipFile as exc:
            raise DatasetError(f"{archive} is not a readable zip: {exc}") from exc
        (target / ".complete").touch()
    return target
