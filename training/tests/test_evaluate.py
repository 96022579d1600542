"""polyp-train evaluate on the five real Kvasir-SEG frames, against Dice and IoU computed by hand.

The models are one-layer ONNX graphs with constant logits, so the right answer is known without
training: "polyp everywhere" scores 2|T| / (|T| + W*H) on a frame whose mask has |T| pixels, and
"polyp nowhere" scores 0. Scoring runs at each frame's original size, through serving's letterbox.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from polyp_core.preprocess import binary_mask
from polyp_core.repository import MODEL_FILE
from polyp_dev.onnx_models import constant_model
from polyp_train.evaluate import ModelUnderTest, card_markdown, evaluate, model_card
from polyp_train.prepare import prepare

SIZE = 64


def by_hand(kvasir_samples) -> dict[str, tuple[float, float]]:
    """Per frame (Dice, IoU) of predicting polyp on every pixel."""
    scores = {}
    for mask_path in sorted((kvasir_samples / "masks").iterdir()):
        truth = np.asarray(binary_mask(Image.open(mask_path))) > 0
        scores[mask_path.stem] = (2 * truth.sum() / (truth.sum() + truth.size), truth.sum() / truth.size)
    return scores


def test_mean_dice_and_iou_per_image_at_original_resolution(kvasir_samples, tmp_path):
    prepared = prepare([f"kvasir={kvasir_samples}"], tmp_path / "cache", 0.2)
    everything = prepared.train + prepared.val
    expected = by_hand(kvasir_samples)

    metrics, scores, _ = evaluate(ModelUnderTest(constant_model(tmp_path / "all.onnx", 8.0), "all"), everything)
    assert {(s.width, s.height) for s in scores} == {Image.open(s.image).size for s in everything}
    for item in scores:
        assert item.dice == pytest.approx(expected[item.stem][0], abs=1e-9)
        assert item.iou == pytest.approx(expected[item.stem][1], abs=1e-9)
    assert metrics["kvasir"]["images"] == 5
    assert metrics["kvasir"]["mean_dice"] == pytest.approx(np.mean([d for d, _ in expected.values()]), abs=1e-4)

    nothing, _, _ = evaluate(ModelUnderTest(constant_model(tmp_path / "none.onnx", -8.0), "none"), everything)
    assert nothing["kvasir"]["mean_dice"] == 0.0 and nothing["kvasir"]["mean_iou"] == 0.0


def test_the_model_card_names_data_split_metrics_and_citation(kvasir_samples, tmp_path):
    prepared = prepare([f"kvasir={kvasir_samples}"], tmp_path / "cache", 0.2)
    model = ModelUnderTest(constant_model(tmp_path / "all.onnx", 8.0), "polyp-segmenter", "3")
    metrics, _, seconds = evaluate(model, prepared.val)
    card = model_card(model, prepared, "val", metrics, seconds, [f"kvasir={kvasir_samples}"])
    assert card["data"]["splits"]["kvasir"] == {"split": "file-name hash", "train": 4, "val": 1}
    assert card["data"]["fingerprint"] == prepared.fingerprint
    assert card["evaluation"]["metrics"]["kvasir"]["images"] == 1 and "CPU cores" in card["evaluation"]["hardware"]
    text = card_markdown(card)
    assert "| kvasir | 1 |" in text and "doi:10.1007/978-3-030-37734-2_37" in text


def _evaluate(tmp_path, *args: str) -> subprocess.CompletedProcess:
    """`polyp-train evaluate ARGS` in a process of its own, with nothing of this one's environment."""
    return subprocess.run([sys.executable, "-m", "polyp_train.cli", "evaluate", *args], capture_output=True, text=True,
                          env={"POLYP_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"}, timeout=300)  # fmt: skip


def test_the_command_reads_a_model_repository_and_writes_the_card(kvasir_samples, tmp_path):
    repo = tmp_path / "repo"
    constant_model(repo / "polyp-segmenter" / "1" / MODEL_FILE, -8.0)
    constant_model(repo / "polyp-segmenter" / "2" / MODEL_FILE, 8.0)
    result = _evaluate(tmp_path, "--model", str(repo), "--data", f"kvasir={kvasir_samples}", "--split", "all",
                       "--out", str(tmp_path / "card"))  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["model"]["version"] == "2", "the newest published version"
    assert summary["metrics"]["kvasir"]["mean_dice"] == pytest.approx(
        np.mean([d for d, _ in by_hand(kvasir_samples).values()]), abs=1e-4
    )
    card = json.loads((tmp_path / "card" / "model_card.json").read_text())
    assert len(card["images"]) == 5 and (tmp_path / "card" / "model_card.md").read_text().startswith("# Model card")


def test_a_missing_model_is_a_clear_error(kvasir_samples, tmp_path):
    result = _evaluate(tmp_path, "--model", str(tmp_path / "nowhere"), "--data", str(kvasir_samples))
    assert result.returncode != 0 and "no published polyp-segmenter version" in result.stderr
    assert "Traceback" not in result.stderr
