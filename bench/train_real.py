"""Train a recipe (default: the cpu-fast preset) on Kvasir-SEG + CVC-ClinicDB under a wall-time budget,
then score the held-out splits the way serving would: mean Dice per dataset at 15, 30 and 60 minutes
of training, images/s, and the model card.

    uv run python bench/train_real.py [--budget-min 60] [--preset cpu-fast] [--kvasir DIR] [--clinicdb DIR]

The data default to ../shared/data (the public releases: see the README's walk-through). The run is
the platform's own pipeline (Ray Train, MLflow, registry, ONNX export) in a temporary POLYP_HOME;
the weights reached at each mark are exported to ONNX and scored at original resolution
(polyp_train.evaluate) on the held-out frames (Kvasir-SEG by file-name hash, CVC-ClinicDB by
whole video sequence), never seen in training.
Kvasir-SEG: Jha et al., MMM 2020, doi:10.1007/978-3-030-37734-2_37. CVC-ClinicDB: Bernal et al.,
CMIG 43:99-111, 2015. Research and educational use only.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from polyp_fixtures.resolve import SHARED

MARKS = (15, 30, 60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget-min", type=float, default=60.0)
    parser.add_argument("--preset", default="cpu-fast")
    parser.add_argument("--kvasir", default=str(SHARED / "data" / "kvasir-seg"))
    parser.add_argument("--clinicdb", default=str(SHARED / "data" / "cvc-clinicdb"))
    args = parser.parse_args()
    for folder in (args.kvasir, args.clinicdb):
        if not Path(folder, "images").is_dir():
            raise SystemExit(f"no dataset at {folder}: give --kvasir/--clinicdb (images/ and masks/ folders)")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ["POLYP_HOME"] = str(tmp / "home")
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        import torch

        from polyp_train.evaluate import ModelUnderTest, card_markdown, evaluate, run_evaluation
        from polyp_train.export import export_onnx
        from polyp_train.model import build_model
        from polyp_train.pipeline import RunOptions, train
        from polyp_train.prepare import prepare
        from polyp_train.presets import PRESETS
        from polyp_train.trainer import TrainConfig

        recipe = PRESETS[args.preset]
        sources = [f"kvasir={args.kvasir}", f"clinicdb={args.clinicdb}"]
        snapshots = tmp / "snapshots"
        snapshots.mkdir()
        marks = [m for m in MARKS if m <= args.budget_min]
        config = TrainConfig.from_recipe(
            recipe,
            sources,
            time_budget_min=args.budget_min,
            storage_path=str(tmp / "ckpt"),
            cache_dir=str(tmp / "cache"),
            name=f"bench-real-{args.preset}",
            snapshots={"dir": str(snapshots), "minutes": marks},
        )
        spec = config.spec
        started = time.perf_counter()
        summary = train(config, RunOptions(model_repo=str(tmp / "repo"), dice_threshold=0.0))
        wall = time.perf_counter() - started

        from polyp_train.tracking import connect

        client, _ = connect("polyp-segmentation")
        history = {m.step: m.value for m in client.get_metric_history(summary.run_id, "train_images_per_s")}
        minutes = {m.step: m.value for m in client.get_metric_history(summary.run_id, "minutes")}
        print(
            f"\n{args.preset}: {spec.architecture} {spec.size}px, batch {config.batch_size}, lr {config.lr}, "
            f"{config.precision}, channels_last={config.channels_last}, {config.workers} Ray worker(s), "
            f"{os.cpu_count()} CPUs; budget {args.budget_min:g} min, {len(minutes)} epochs in "
            f"{max(minutes.values()):.1f} min of training, wall {wall / 60:.1f} min with start-up and export"
        )
        print(f"training throughput: median {statistics.median(history.values()):.1f} images/s per epoch")

        prepared = prepare(sources, tmp / "cache", config.val_fraction)
        print(f"held out: {prepared.summary()}")
        for mark in marks:
            weights = snapshots / f"after-{mark}-min.pt"
            if not weights.is_file():
                print(f"after {mark} min: not reached")
                continue
            network = build_model(spec)
            network.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
            (tmp / f"m{mark}.onnx").write_bytes(export_onnx(network.eval(), spec))
            metrics, _, seconds = evaluate(ModelUnderTest(tmp / f"m{mark}.onnx", "snapshot", str(mark)), prepared.val)
            print(
                f"after {mark} min of training: "
                + ", ".join(
                    f"{name} mean Dice {m['mean_dice']:.4f} IoU {m['mean_iou']:.4f} ({m['images']} images)"
                    for name, m in metrics.items()
                )
                + f"  [scored in {seconds:.0f} s]"
            )

        card = run_evaluation(
            f"models:/polyp-segmenter/{summary.version}",
            sources,
            "polyp-segmenter",
            None,
            "val",
            None,
            tmp / "cache",
            tmp / "card",
        )
        print("\nbest epoch by in-training validation Dice (what the pipeline registers and exports):\n")
        print(card_markdown(card))


if __name__ == "__main__":
    main()
