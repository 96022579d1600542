"""Run artifacts: learning curves and predicted-mask overlays on validation images."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def learning_curves(history: list[dict], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, (loss_ax, score_ax) = plt.subplots(1, 2, figsize=(10, 4))
    loss_ax.plot(epochs, [h["train_loss"] for h in history], label="train")
    loss_ax.plot(epochs, [h["val_loss"] for h in history], label="validation")
    loss_ax.set(title="Dice + BCE loss", xlabel="epoch")
    loss_ax.legend()
    score_ax.plot(epochs, [h["val_dice"] for h in history], label="Dice")
    score_ax.plot(epochs, [h["val_iou"] for h in history], label="IoU")
    score_ax.set(title="validation", xlabel="epoch", ylim=(0, 1))
    score_ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def overlay(image: np.ndarray, truth: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Prediction in green, missed polyp in red, on the letterboxed image."""
    out = image.astype(np.float32)
    out[predicted > 0] = 0.55 * out[predicted > 0] + 0.45 * np.array([0, 255, 0])
    missed = (truth > 0) & (predicted == 0)
    out[missed] = 0.55 * out[missed] + 0.45 * np.array([255, 0, 0])
    return out.astype(np.uint8)


def overlay_grid(tiles: list[np.ndarray], path: Path) -> Path:
    from PIL import Image

    size = tiles[0].shape[0]
    columns = min(4, len(tiles))
    rows = (len(tiles) + columns - 1) // columns
    grid = Image.new("RGB", (columns * size, rows * size))
    for i, tile in enumerate(tiles):
        grid.paste(Image.fromarray(tile), ((i % columns) * size, (i // columns) * size))
    grid.save(path)
    return path
