"""polyp-train: make-synthetic, train, tune, export, evaluate.

Exit codes: 0 success, 2 bad arguments, 3 bad dataset, 4 tracking server unreachable,
5 storage unreachable, 6 export failed (checker, parity, existing version), 130 cancelled.
The last line a successful train/tune/export prints is a JSON summary (run, version, Dice, ...).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import typing
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from pydantic import ValidationError

from polyp_core.home import polyp_home
from polyp_core.job import PRECISIONS, TrainingParameters, option, validation_message
from polyp_core.repository import DEFAULT_MODEL_NAME

from .errors import EXIT_CANCELLED, PolypTrainError
from .prepare import DEFAULT_VAL_FRACTION
from .presets import PRESETS, preset_in

if TYPE_CHECKING:
    from .pipeline import RunOptions
    from .trainer import TrainConfig

Number = TypeVar("Number", int, float)


def _positive(kind: Callable[[str], Number]) -> Callable[[str], Number]:
    def parse(text: str) -> Number:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value

    return parse


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def _add_training_args(p: argparse.ArgumentParser, preset: dict) -> None:
    p.add_argument(
        "--data",
        required=True,
        action="append",
        help="dataset, repeatable: [NAME=]PATH, PATH a folder with images/ and masks/ (or holding one), "
        "the Kvasir-SEG release zip, a list file of 'image mask' lines, or s3://bucket/prefix",
    )
    p.add_argument(
        "--bad-pairs",
        choices=["fail", "skip"],
        default="fail",
        help="a missing mask or image, an unreadable file or a size mismatch: fail the run (default) "
        "or leave the pair out and report it",
    )
    # The job contract's options: the same defaults, bounds and help the control service's API has.
    p.add_argument("--preset", choices=sorted(PRESETS), help="a named recipe (see polyp_train.presets); options given win")
    for name, info in TrainingParameters.model_fields.items():
        default = preset.get(name, info.default)
        help_text = f"{info.description or name.replace('_', ' ')} (default {default})"
        if isinstance(info.default, bool):
            p.add_argument(option(name), action=argparse.BooleanOptionalAction, default=default, help=help_text)
        elif name == "precision":
            p.add_argument(option(name), choices=PRECISIONS, default=default, help=help_text)
        else:  # an optional field (default None) takes the type it holds when given
            kind = (
                type(info.default)
                if info.default is not None
                else next(t for t in typing.get_args(info.annotation) if t is not type(None))
            )
            p.add_argument(option(name), type=kind, default=default, help=help_text)
    p.add_argument(
        "--device",
        choices=["cpu", "cuda"],
        default=preset.get("device", "cpu"),
        help="cuda: one GPU per Ray worker (same as --gpu)",
    )
    p.add_argument("--cpus-per-worker", type=_positive(int), help="default: the cluster's CPUs / workers")
    p.add_argument("--gpu", action="store_true", help="one GPU per worker")
    p.add_argument("--val-fraction", type=_fraction, default=DEFAULT_VAL_FRACTION)
    p.add_argument("--model-repo", help="Triton model repository (folder or s3://); omit to skip export")
    p.add_argument("--model-name", default=DEFAULT_MODEL_NAME, help="registered model and Triton model name")
    p.add_argument(
        "--int8",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also publish an INT8 version (ONNX Runtime static quantization, calibrated on training frames) "
        "when its validation Dice is within 0.01 of fp32 on every dataset (default on)",
    )
    p.add_argument("--experiment", default="polyp-segmentation")
    p.add_argument(
        "--storage-path",
        default=os.environ.get("POLYP_CHECKPOINT_URI") or str(polyp_home() / "ray-results"),
        help="Ray Train checkpoints: folder or s3://",
    )
    p.add_argument("--ray-address", help="Ray cluster (default: RAY_ADDRESS, else a local Ray)")
    p.add_argument("--name", default="polyp-train", help="run name")


def _configs(args: argparse.Namespace) -> tuple[TrainConfig, RunOptions]:
    from .model import ModelSpec
    from .pipeline import RunOptions
    from .trainer import TrainConfig

    try:
        job = TrainingParameters(**{name: getattr(args, name) for name in TrainingParameters.model_fields})
    except ValidationError as exc:
        raise ValueError(f"bad training options: {validation_message(exc)}") from None
    config = TrainConfig(
        data=args.data,
        epochs=job.epochs,
        workers=job.workers,
        spec=ModelSpec(job.arch, job.encoder, job.size),
        batch_size=job.batch_size,
        lr=job.lr,
        val_fraction=args.val_fraction,
        seed=job.seed,
        skip_bad_pairs=args.bad_pairs == "skip",
        precision=job.precision,
        channels_last=job.channels_last,
        time_budget_min=job.time_budget_min,
        cpus_per_worker=args.cpus_per_worker,
        gpu=args.gpu or args.device == "cuda",
        storage_path=args.storage_path,
        name=args.name,
    )
    options = RunOptions(args.experiment, args.model_name, job.dice_threshold, args.model_repo, args.ray_address, int8=args.int8)
    return config, options


def _make_synthetic(args: argparse.Namespace) -> int:
    from .synthetic import make_dataset

    out = make_dataset(args.out, args.n, args.size, args.seed)
    print(f"wrote {args.n} image/mask pairs of {args.size}x{args.size} to {out}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from .model import build_model
    from .pipeline import train

    config, options = _configs(args)
    build_model(config.spec)  # an unknown architecture or encoder fails here, before Ray starts
    print(train(config, options).json_line())
    return 0


def _tune(args: argparse.Namespace) -> int:
    from .model import build_model
    from .tune import tune

    config, options = _configs(args)
    build_model(config.spec)
    print(tune(config, options, args.trials).json_line())
    return 0


def _export(args: argparse.Namespace) -> int:
    from .registry import export_registered

    print(export_registered(args.model_name, args.version, args.alias, args.model_repo, args.data).json())
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .evaluate import card_markdown, run_evaluation

    card = run_evaluation(
        args.model,
        args.data,
        args.model_name,
        args.version,
        args.split,
        args.val_fraction,
        polyp_home() / "cache",
        Path(args.out) if args.out else None,
        args.bad_pairs == "skip",
    )
    print(card_markdown(card))
    print(
        json.dumps({"model": card["model"], "metrics": card["evaluation"]["metrics"], "fingerprint": card["data"]["fingerprint"]})
    )
    return 0


def _dataset_push(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from .dataset_push import push

    summary = push(args.source, args.destination, polyp_home() / "cache")
    print(
        f"pushed {summary.pairs} pairs to {summary.uri}: {summary.uploaded} files uploaded, {summary.skipped} "
        f"already there; fingerprint {summary.fingerprint}"
    )
    print(json.dumps(asdict(summary)))
    return 0


def build_parser(preset: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="polyp-train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)

    synthetic = sub.add_parser("make-synthetic", help="generate a polyp-like dataset")
    synthetic.add_argument("--n", type=_positive(int), default=64)
    synthetic.add_argument("--size", type=_positive(int), default=256)
    synthetic.add_argument("--out", required=True)
    synthetic.add_argument("--seed", type=int, default=0)
    synthetic.set_defaults(func=_make_synthetic)

    recipe = PRESETS.get(preset or "", {})
    train = sub.add_parser("train", help="train on Ray Train, track in MLflow, register, gate, export")
    _add_training_args(train, recipe)
    train.set_defaults(func=_train)

    tune = sub.add_parser("tune", help="Ray Tune sweep; the best trial is registered like a train run")
    _add_training_args(tune, recipe)
    tune.add_argument("--trials", type=_positive(int), default=4)
    tune.set_defaults(func=_tune)

    export = sub.add_parser("export", help="export a registered model version to a Triton repository")
    export.add_argument("--model-name", default=DEFAULT_MODEL_NAME)
    which = export.add_mutually_exclusive_group()
    which.add_argument("--version", help="MLflow model version")
    which.add_argument("--alias", default="champion", help="MLflow alias (default champion)")
    export.add_argument("--model-repo", required=True, help="Triton model repository (folder or s3://)")
    export.add_argument("--data", help="dataset whose validation images check ONNX parity (default: random inputs)")
    export.set_defaults(func=_export)

    evaluate = sub.add_parser("evaluate", help="mean Dice and IoU per dataset at original resolution; a model card")
    evaluate.add_argument(
        "--model",
        required=True,
        help="model repository, version folder, model.onnx, or models:/NAME/VERSION | models:/NAME@ALIAS",
    )
    evaluate.add_argument("--model-name", default=DEFAULT_MODEL_NAME, help="the model in a repository")
    evaluate.add_argument("--version", help="the version in a repository (default: the newest published)")
    evaluate.add_argument("--data", required=True, action="append", help="as for train: [NAME=]PATH, repeatable")
    evaluate.add_argument(
        "--split",
        choices=["val", "all"],
        default="val",
        help="val: the held-out frames of training's split (default); all: every frame",
    )
    evaluate.add_argument(
        "--val-fraction",
        type=_fraction,
        help=f"as the model was trained with (default: its MLflow run's, else {DEFAULT_VAL_FRACTION})",
    )
    evaluate.add_argument("--bad-pairs", choices=["fail", "skip"], default="fail")
    evaluate.add_argument("--out", help="folder for model_card.md and model_card.json")
    evaluate.set_defaults(func=_evaluate)

    dataset = sub.add_parser("dataset", help="datasets in the object store").add_subparsers(dest="action", required=True)
    push = dataset.add_parser("push", help="upload a dataset (checksummed, resumable) and print its fingerprint")
    push.add_argument("source", help="[NAME=]PATH as for --data: folder, release zip or list file")
    push.add_argument("destination", help="s3://bucket/prefix")
    push.set_defaults(func=_dataset_push)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(preset_in(argv)).parse_args(argv)
    from .trainer import cancel_on_sigterm

    cancel_on_sigterm()
    try:
        return args.func(args)
    except PolypTrainError as exc:
        print(f"polyp-train: {exc}", file=sys.stderr)
        return exc.exit_code
    except ValueError as exc:
        print(f"polyp-train: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("polyp-train: cancelled", file=sys.stderr)
        return EXIT_CANCELLED


if __name__ == "__main__":
    sys.exit(main())
