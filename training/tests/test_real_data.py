"""Reading, splitting and evaluating on small real subsets: 30 Kvasir-SEG pairs and 24 CVC-ClinicDB
pairs from four of its video sequences, with the release's README (fixture groups data/kvasir-seg
and data/cvc-clinicdb). Each group is linked into a folder of its own (polyp_fixtures.linked), so the
tests see exactly the listed files (../shared/data holds all of them).

Data: Kvasir-SEG (Jha et al., MMM 2020, doi:10.1007/978-3-030-37734-2_37); CVC-ClinicDB (Bernal et
al., Computerized Medical Imaging and Graphics 43:99-111, 2015). Research and education only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import polyp_fixtures
from polyp_core.preprocess import binary_mask
from polyp_dev.onnx_models import constant_model
from polyp_train import data
from polyp_train.evaluate import ModelUnderTest, card_markdown, evaluate, model_card
from polyp_train.prepare import prepare
from polyp_train.splits import CVC_README, sequence_map

CVC_SEQUENCES = {"1": range(1, 7), "4": range(68, 74), "10": range(200, 206), "29": range(607, 613)}


@pytest.fixture(scope="module")
def real(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("real")
    return {
        "kvasir": polyp_fixtures.linked("data/kvasir-seg", base / "kvasir-seg"),
        "clinicdb": polyp_fixtures.linked("data/cvc-clinicdb", base / "cvc-clinicdb"),
    }


def test_both_datasets_read_with_their_original_sizes_and_binary_masks(real):
    kvasir, cvc = data.discover(real["kvasir"]), data.discover(real["clinicdb"])
    assert len(kvasir) == 30 and len(cvc) == 24
    assert {Image.open(s.image).size for s in cvc} == {(384, 288)}
    kvasir_sizes = {Image.open(s.image).size for s in kvasir}
    assert len(kvasir_sizes) > 3, "Kvasir-SEG frames come in many sizes"
    for sample in kvasir[:5] + cvc[:5]:
        mask = np.asarray(binary_mask(Image.open(sample.mask)))
        assert set(np.unique(mask)) <= {0, 255} and mask.shape[::-1] == Image.open(sample.image).size
        assert 0 < (mask > 0).mean() < 1, f"{sample.stem}: a polyp and background"


def test_cvc_clinicdb_is_split_by_whole_sequences_from_its_readme(real, tmp_path):
    sequences = sequence_map(real["clinicdb"])
    assert (real["clinicdb"] / CVC_README).is_file()
    for sequence, frames in CVC_SEQUENCES.items():
        assert {sequences[str(n)] for n in frames} == {sequence}

    prepared = prepare([f"clinicdb={real['clinicdb']}", f"kvasir={real['kvasir']}"], tmp_path / "cache", 0.2)
    cvc = next(part for part in prepared.splits if part.name == "clinicdb")
    kvasir = next(part for part in prepared.splits if part.name == "kvasir")
    assert cvc.policy == "video sequence" and kvasir.policy == "file-name hash"
    val_sequences = {sequences[s.stem] for s in cvc.val}
    assert val_sequences == set(cvc.val_sequences) and val_sequences.isdisjoint({sequences[s.stem] for s in cvc.train})
    assert len(cvc.val) % 6 == 0 and 0 < len(cvc.val) < 24, "whole sequences of six frames"
    assert len(kvasir.val) == 6 and len(kvasir.train) == 24
    assert prepared.summary()["clinicdb"]["val_sequences"] == cvc.val_sequences


def test_the_split_is_part_of_the_fingerprint_and_does_not_depend_on_order(real, tmp_path):
    one = prepare([f"kvasir={real['kvasir']}", f"clinicdb={real['clinicdb']}"], tmp_path / "a", 0.2)
    same = prepare([f"clinicdb={real['clinicdb']}", f"kvasir={real['kvasir']}"], tmp_path / "b", 0.2)
    assert one.fingerprint == same.fingerprint
    assert {s.stem for s in one.val} == {s.stem for s in same.val}
    other_split = prepare([f"kvasir={real['kvasir']}", f"clinicdb={real['clinicdb']}"], tmp_path / "c", 0.4)
    assert other_split.fingerprint != one.fingerprint


def hand_dice_everywhere(mask_path: Path) -> float:
    """Dice of predicting polyp on every pixel: 2|T| / (|T| + W*H), at the mask's own size."""
    truth = np.asarray(binary_mask(Image.open(mask_path))) > 0
    return 2 * truth.sum() / (truth.sum() + truth.size)


def test_per_dataset_mean_dice_matches_the_hand_computed_one_and_the_card_cites_both(real, tmp_path):
    sources = [f"kvasir={real['kvasir']}", f"clinicdb={real['clinicdb']}"]
    prepared = prepare(sources, tmp_path / "cache", 0.2)
    everything = prepared.train + prepared.val
    model = ModelUnderTest(constant_model(tmp_path / "all.onnx", 8.0), "polyp-segmenter", "1")
    metrics, scores, seconds = evaluate(model, everything)

    for name, folder in real.items():
        expected = [hand_dice_everywhere(mask) for mask in sorted((folder / "masks").iterdir())]
        assert metrics[name]["images"] == len(expected)
        assert metrics[name]["mean_dice"] == pytest.approx(float(np.mean(expected)), abs=1e-4)
    assert {(s.width, s.height) for s in scores if s.dataset == "clinicdb"} == {(384, 288)}

    card = model_card(model, prepared, "all", metrics, seconds, sources)
    assert card["data"]["splits"]["clinicdb"]["split"] == "video sequence"
    assert card["data"]["splits"]["kvasir"] == {"split": "file-name hash", "train": 24, "val": 6}
    text = card_markdown(card)
    assert "doi:10.1007/978-3-030-37734-2_37" in text and "Computerized Medical Imaging and Graphics 43:99-111" in text
    assert f"| clinicdb | 24 | {metrics['clinicdb']['mean_dice']:.4f} |" in text
