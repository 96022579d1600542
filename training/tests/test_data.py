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
from polyp_train.splits import fingerprint, split_dataset


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_discover_pairs_by_stem_and_splits_by_file_name_hash(synthetic):
    samples = data.discover(synthetic, "synthetic")
    assert len(samples) == 12 and all(s.image.stem == s.mask.stem and s.dataset == "synthetic" for s in samples)
    first = split_dataset("synthetic", samples, 0.25, None)
    again = split_dataset("synthetic", list(reversed(samples)), 0.25, None)
    assert [s.stem for s in first.val] == [s.stem for s in again.val] and len(first.val) == 3 and len(first.train) == 9
    assert not {s.stem for s in first.train} & {s.stem for s in first.val}
    # A frame's side depends on its own name only: dropping other frames does not move it.
    fewer = split_dataset("synthetic", [s for s in samples if s.stem != first.train[0].stem], 0.25, None)
    assert {s.stem for s in first.val} & {s.stem for s in fewer.train} == set()


def test_fingerprint_follows_content_and_split(synthetic, tmp_path):
    copy = _copy(synthetic, tmp_path / "copy")

    def fingerprint_of(folder, val_fraction=0.25):
        return fingerprint([split_dataset("d", data.discover(folder), val_fraction, None)])

    assert fingerprint_of(copy) == fingerprint_of(synthetic)
    assert fingerprint_of(synthetic, 0.5) != fingerprint_of(synthetic), "the split is part of the fingerprint"
    mask = copy / "masks" / "synthetic-00000.png"
    pixels = np.asarray(Image.open(mask)).copy()
    pixels[0, 0] = 255 - pixels[0, 0]
    Image.fromarray(pixels).save(mask)
    assert fingerprint_of(copy) != fingerprint_of(synthetic)


@pytest.mark.parametrize(
    "breakage, message",
    [
        (lambda d: shutil.rmtree(d / "masks"), "has no masks/ folder"),
        (lambda d: (d / "masks" / "synthetic-00003.png").unlink(), "1 image(s) have no mask"),
        (lambda d: [p.unlink() for p in (d / "images").iterdir()], "holds no images"),
    ],
)
def test_bad_datasets_are_named_clearly(synthetic, tmp_path, breakage, message):
    broken = _copy(synthetic, tmp_path / "broken")
    breakage(broken)
    with pytest.raises(DatasetError, match=re.escape(message)):
        data.discover(broken)


def test_bad_pairs_fail_by_name_or_are_left_out_and_reported(synthetic, tmp_path):
    broken = _copy(synthetic, tmp_path / "broken")
    (broken / "images" / "synthetic-00005.jpg").write_bytes(b"not a jpeg")
    (broken / "masks" / "synthetic-00003.png").unlink()
    Image.new("L", (10, 10)).save(broken / "masks" / "synthetic-00007.png")
    with pytest.raises(DatasetError, match=r"1 image\(s\) have no mask.*synthetic-00003"):
        data.discover(broken)
    with pytest.raises(DatasetError, match=r"synthetic-00005.jpg"):
        data.check_pairs(data.discover(broken, problems=[]))

    problems: list[str] = []
    kept = data.check_pairs(data.discover(broken, problems=problems), problems)
    assert len(kept) == 9 and {s.stem for s in kept}.isdisjoint({"synthetic-00003", "synthetic-00005", "synthetic-00007"})
    assert any("synthetic-00003" in p and "no mask" in p for p in problems)
    assert any("synthetic-00005.jpg" in p and "unreadable" in p for p in problems)
    assert any("synthetic-00007" in p and "differ in size" in p for p in problems)


def test_the_release_zip_a_nested_folder_and_a_list_file_read_the_same_pairs(synthetic, tmp_path):
    import zipfile

    expected = [(s.stem, s.image.read_bytes()) for s in data.discover(synthetic)]
    nested = tmp_path / "download"
    shutil.copytree(synthetic, nested / "Kvasir-SEG")
    archive = tmp_path / "kvasir-seg.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        for path in sorted((nested / "Kvasir-SEG").rglob("*.*")):
            bundle.write(path, path.relative_to(nested))
    listing = tmp_path / "pairs.txt"
    listing.write_text(
        "# image mask\n"
        + "".join(f"{s.image.relative_to(tmp_path)} {s.mask.relative_to(tmp_path)}\n" for s in data.discover(nested))
    )
    for source in (nested, data.materialize(str(archive), tmp_path / "cache"), listing):
        assert [(s.stem, s.image.read_bytes()) for s in data.discover(source)] == expected, source


def test_three_channel_jpeg_and_one_channel_png_masks_threshold_at_128(tmp_path):
    from polyp_core.preprocess import binary_mask

    values = np.array([[0, 127, 128, 255]], dtype=np.uint8)
    grey = Image.fromarray(values)
    rgb = Image.fromarray(np.repeat(values[..., None], 3, axis=2))
    for mask in (grey, rgb):
        assert (np.asarray(binary_mask(mask)) > 0).tolist() == [[False, False, True, True]]


def test_letterbox_keeps_aspect_and_pads_centred():
    box = Letterbox.for_shape(529, 622, 256)
    assert (box.scaled_width, box.scaled_height) == (256, 218) and (box.top, box.left) == (19, 0)
    image = Image.new("RGB", (622, 529), (200, 100, 50))
    pixels, _ = letterbox_image(image, 256)
    assert pixels.shape == (256, 256, 3)
    assert (pixels[:19] == 0).all() and (pixels[19 + 218 :] == 0).all() and (pixels[128, 128] == (200, 100, 50)).all()


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


def test_a_video_dataset_is_split_by_whole_sequences(synthetic, tmp_path):
    from polyp_train.splits import sequence_map

    video = _copy(synthetic, tmp_path / "video")
    stems = sorted(p.stem for p in (video / "images").iterdir())
    (video / "sequences.csv").write_text("".join(f"{stem},seq{i // 3}\n" for i, stem in enumerate(stems)))
    part = split_dataset("video", data.discover(video), 0.25, sequence_map(video))
    assert part.policy == "video sequence" and len(part.val_sequences) == 1 and len(part.val) == 3
    sequence_of = {stem: f"seq{i // 3}" for i, stem in enumerate(stems)}
    assert {sequence_of[s.stem] for s in part.val}.isdisjoint({sequence_of[s.stem] for s in part.train})


def test_cvc_clinicdb_readme_table_maps_frames_to_sequences(tmp_path):
    """The table as CVC-ClinicDB's README writes it: tabs, ragged columns, 612 frames in 29 sequences."""
    from polyp_train.splits import CVC_README, sequence_map

    (tmp_path / CVC_README).write_bytes(  # Latin-1, as the original (an accented name in its text)
        "Hospital Cl\xednic\n       |      1 to  25    |\t 1\t|\n       |     26 to  50    |\t 2   |\n"
        "       |    318 to 342    |16 \t|\n\t  |    547 to 571    |27\t|\n       |    592 to 612    |\t29\t|\n".encode("latin-1")
    )
    sequences = sequence_map(tmp_path)
    assert (sequences["1"], sequences["25"], sequences["26"], sequences["330"], sequences["571"], sequences["612"]) == (
        "1",
        "1",
        "2",
        "16",
        "27",
        "29",
    )
    assert "26" in sequences and "300" not in sequences
