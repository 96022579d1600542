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

import polyp_fixtures


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
        config = TrainConfig(
            data=str(data),
            epochs=args.epochs,
            workers=args.workers,
            spec=ModelSpec("Unet", args.encoder, args.size),
            storage_path=str(tmp / "ckpt"),
            cache_dir=str(tmp / "cache"),
            name="bench-quality",
        )
        started = time.perf_counter()
        summary = train(config, RunOptions(model_repo=str(tmp / "repo"), dice_threshold=0.5))
        wall = time.perf_counter() - started

        from polyp_train.tracking import connect

        client, _ = connect("polyp-segmentation")
        history = client.get_metric_history(summary.run_id, "val_dice")
        print(
            f"\n{args.n} synthetic images (256px) at {args.size}px, Unet/{args.encoder}, {args.epochs} epochs, "
            f"{args.workers} Ray worker(s), {os.cpu_count()} CPUs, wall {wall:.0f} s"
        )
        print("validation Dice by epoch: " + " ".join(f"{m.step}:{m.value:.3f}" for m in sorted(history, key=lambda m: m.step)))
        print(
            f"registered version {summary.version}, best val Dice {summary.val_dice:.3f}, IoU {summary.val_iou:.3f}, "
            f"champion={summary.champion}, ONNX parity max abs diff {summary.parity_max_abs_diff}"
        )
        if not summary.published:
            print("the quality gate rejected the model; nothing exported, no real-frame score")
            return
        from polyp_train.data import discover
        from polyp_train.evaluate import ModelUnderTest, evaluate

        frames = discover(polyp_fixtures.path("samples/kvasir-seg"), "kvasir-samples")
        model = ModelUnderTest(Path(summary.published) / "model.onnx", "polyp-segmenter", summary.version)
        metrics, scores, _ = evaluate(model, frames)
        for item in scores:
            print(f"real frame {item.stem} ({item.width}x{item.height}): Dice {item.dice:.3f}")
        print(f"mean Dice on the {len(scores)} real Kvasir-SEG frames: {metrics['kvasir-samples']['mean_dice']:.3f}")


if __name__ == "__main__":
    main()
