"""A longer synthetic training run, then the Dice of its exported model on the five real Kvasir-SEG frames.

    uv run python bench/train_quality.py [--n 240] [--epochs 12] [--size 160] [--encoder resnet18]

The full pipeline (Ray Train, MLflow, quality gate, ONNX export into a Triton repository) runs in
a temporary POLYP_HOME; the real frames are scored through the exported ONNX model with the
serving preprocessing (letterbox in, mask restored to the original size), so the figure is what
a user of the served model would see.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

import polyp_fixtures


def dice(predicted: np.ndarray, truth: np.ndarray) -> float:
    predicted, truth = predicted > 0, truth > 0
    total = predicted.sum() + truth.sum()
    return 1.0 if total == 0 else float(2 * (predicted & truth).sum() / total)


def score_real_frames(model_file: Path, size: int, samples: Path) -> list[tuple[str, tuple[int, int], float]]:
    import onnxruntime as ort

    from polyp_core.preprocess import binary_mask, preprocess, restore_mask
    from polyp_train.data import discover

    session = ort.InferenceSession(str(model_file), providers=["CPUExecutionProvider"])
    scores = []
    for sample in discover(samples):
        image = Image.open(sample.image)
        pixels, box = preprocess(image, size)
        logits = session.run(None, {"image": pixels[None]})[0][0, 0]
        mask = restore_mask(1 / (1 + np.exp(-logits)), box)
        truth = np.asarray(binary_mask(Image.open(sample.mask)))
        scores.append((sample.stem, image.size, dice(mask, truth)))
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=240)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--size", type=int, default=160)
    parser.add_argument("--encoder", default="resnet18")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ["POLYP_HOME"] = str(tmp / "home")
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        from polyp_train.model import ModelSpec
        from polyp_train.pipeline import RunOptions, train
        from polyp_train.synthetic import make_dataset
        from polyp_train.trainer import TrainConfig

        data = make_dataset(tmp / "data", args.n, 256, seed=7)
        config = TrainConfig(data=str(data), epochs=args.epochs, workers=args.workers,
                             spec=ModelSpec("Unet", args.encoder, args.size), storage_path=str(tmp / "ckpt"),
                             cache_dir=str(tmp / "cache"), name="bench-quality")
        started = time.perf_counter()
        summary = train(config, RunOptions(model_repo=str(tmp / "repo"), dice_threshold=0.5))
        wall = time.perf_counter() - started

        from polyp_train.tracking import connect

        client, _ = connect("polyp-segmentation")
        history = client.get_metric_history(summary.run_id, "val_dice")
        print(f"\n{args.n} synthetic images (256px) at {args.size}px, Unet/{args.encoder}, {args.epochs} epochs, "
              f"{args.workers} Ray worker(s), {os.cpu_count()} CPUs, wall {wall:.0f} s")
        print("validation Dice by epoch: " + " ".join(f"{m.step}:{m.value:.3f}" for m in sorted(history, key=lambda m: m.step)))
        print(f"registered version {summary.version}, best val Dice {summary.val_dice:.3f}, IoU {summary.val_iou:.3f}, "
              f"champion={summary.champion}, ONNX parity max abs diff {summary.parity_max_abs_diff}")
        if not summary.published:
            print("the quality gate rejected the model; nothing exported, no real-frame score")
            return
        scores = score_real_frames(Path(summary.published) / "model.onnx", args.size, polyp_fixtures.path("samples/kvasir-seg"))
        for stem, (width, height), value in scores:
            print(f"real frame {stem} ({width}x{height}): Dice {value:.3f}")
        print(f"mean Dice on the {len(scores)} real Kvasir-SEG frames: {np.mean([s for *_, s in scores]):.3f}")


if __name__ == "__main__":
    main()
