"""One training run end to end: data checks, Ray Train, MLflow run and registry, quality gate, export."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from polyp_core.job import RunSummary
from polyp_core.preprocess import normalize
from polyp_core.repository import DEFAULT_MODEL_NAME

from . import data as datasets
from .export import check_parity, export_onnx, publish, record_published, triton_config
from .hardware import describe as hardware
from .model import ModelSpec
from .plots import learning_curves, overlay, overlay_grid
from .prepare import PreparedData, prepare
from .tracking import CHAMPION, connect, git_commit, quality_gate, tracking_uri
from .trainer import TrainConfig, TrainOutcome, ensure_ray, make_trainer, outcome_of

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient


@dataclass
class RunOptions:
    experiment: str = "polyp-segmentation"
    model_name: str = DEFAULT_MODEL_NAME
    dice_threshold: float = 0.5
    model_repo: str | None = None  # Triton repository: folder or s3://; None skips export
    ray_address: str | None = None
    int8: bool = True  # also publish an INT8 version when its validation Dice is within 0.01 of fp32 (quantize.py)


def prepare_dataset(config: TrainConfig) -> PreparedData:
    """Fail fast on bad data, before any worker starts (or report the bad pairs left out)."""
    prepared = prepare(config.sources(), Path(config.cache_dir), config.val_fraction, config.skip_bad_pairs)
    for problem in prepared.problems:
        print(f"left out: {problem}", flush=True)
    return prepared


def _params(config: TrainConfig, prepared: PreparedData) -> dict:
    params = {
        "arch": config.spec.arch,
        "encoder": config.spec.encoder,
        "input_size": config.spec.size,
        "epochs": config.epochs,
        "workers": config.workers,
        "batch_size": config.batch_size,
        "lr": config.lr,
        "val_fraction": config.val_fraction,
        "seed": config.seed,
        "train_images": len(prepared.train),
        "val_images": len(prepared.val),
        "dataset": " ".join(config.sources()),
        "dataset_fingerprint": prepared.fingerprint,
        "gpu": config.gpu,
        "bad_pairs_left_out": len(prepared.problems),
        "hardware": hardware(),
        "precision": config.precision,
        "channels_last": config.channels_last,
        "time_budget_min": config.time_budget_min,
    }
    for name, summary in prepared.summary().items():
        params.update({f"data.{name}.{key}": value for key, value in summary.items() if key != "val_sequences"})
    return params


def _log_split(client: MlflowClient, run_id: str, prepared: PreparedData) -> None:
    """Which frame is on which side (and what was left out): the split is part of the run's record."""
    record = {part.name: {**part.summary(), "val_stems": [s.stem for s in part.val]} for part in prepared.splits}
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "split.json").write_text(json.dumps({"datasets": record, "left_out": prepared.problems}, indent=1))
        client.log_artifact(run_id, str(Path(tmp) / "split.json"), "data")


def _validation_batch(
    val: list[datasets.Sample], size: int, limit: int = 8
) -> tuple[list[tuple[np.ndarray, np.ndarray]], np.ndarray]:
    pairs = [datasets.load_pair(sample, size) for sample in val[:limit]]
    return pairs, np.stack([normalize(image) for image, _ in pairs])


def finish_run(
    client: MlflowClient, run_id: str, outcome: TrainOutcome, config: TrainConfig, options: RunOptions, prepared: PreparedData
) -> RunSummary:
    """Artifacts, registration, quality gate and export for a finished training run."""
    import mlflow
    import torch

    from .loop import load_checkpoint

    val, fingerprint = prepared.val, prepared.fingerprint
    with outcome.best_checkpoint.as_directory() as folder:
        model, spec = load_checkpoint(Path(folder))
    pairs, inputs = _validation_batch(val, spec.size)
    with torch.no_grad():
        predicted = (torch.sigmoid(model(torch.from_numpy(inputs))).numpy()[:, 0] >= 0.5).astype(np.uint8)

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        client.log_artifact(run_id, str(learning_curves(outcome.history, tmp / "learning_curves.png")), "plots")
        tiles = [overlay(image, mask, pred) for (image, mask), pred in zip(pairs, predicted, strict=True)]
        client.log_artifact(run_id, str(overlay_grid(tiles, tmp / "validation_overlays.png")), "plots")
        (tmp / "model_spec.json").write_text(json.dumps(spec.as_dict()))
        client.log_artifact(run_id, str(tmp / "model_spec.json"), "model_spec")

    best = outcome.best_metrics
    client.log_metric(run_id, "best_val_dice", best["val_dice"])
    client.log_metric(run_id, "best_val_iou", best["val_iou"])
    with mlflow.start_run(run_id=run_id):
        # Pickle, not MLflow's default pt2 graph: the model keeps its dynamic batch axis.
        info = mlflow.pytorch.log_model(
            model,
            name="model",
            registered_model_name=options.model_name,
            serialization_format="pickle",
            pip_requirements=["torch", "segmentation-models-pytorch"],
        )
    version = str(info.registered_model_version)
    client.set_model_version_tag(options.model_name, version, "dataset_fingerprint", fingerprint)
    decision = quality_gate(client, options.model_name, version, best["val_dice"], options.dice_threshold)
    client.set_tag(run_id, "quality_gate", "passed" if decision.promoted else "rejected")
    print(
        f"registered {options.model_name} version {version}: quality gate "
        f"{'passed' if decision.promoted else 'rejected'} ({decision.reason})",
        flush=True,
    )

    published, parity, int8_version = None, None, None
    # Serving takes the newest published version, so only a version that passed the gate is published.
    if options.model_repo and not decision.promoted:
        print(f"not exported to {options.model_repo}: the quality gate rejected version {version}", flush=True)
    elif options.model_repo:
        onnx_bytes = export_onnx(model, spec)
        parity = check_parity(model, onnx_bytes, inputs)
        client.log_metric(run_id, "onnx_parity_max_abs_diff", parity.max_abs_diff)
        published = publish(
            options.model_repo, options.model_name, int(version), onnx_bytes, triton_config(options.model_name, spec)
        )
        record_published(client, options.model_name, version, published, onnx_bytes, "fp32")
        print(f"exported version {version} to {published} ({parity})", flush=True)
        if options.int8:
            int8_version = publish_int8(client, run_id, options, version, onnx_bytes, spec, prepared)
    return RunSummary(
        run_id=run_id,
        model_name=options.model_name,
        version=version,
        val_dice=best["val_dice"],
        val_iou=best["val_iou"],
        champion=decision.promoted,
        gate_reason=decision.reason,
        dataset_fingerprint=fingerprint,
        published=published,
        parity_max_abs_diff=parity.max_abs_diff if parity else None,
        int8_version=int8_version,
    )


def publish_int8(
    client: MlflowClient,
    run_id: str,
    options: RunOptions,
    version: str,
    onnx_bytes: bytes,
    spec: ModelSpec,
    prepared: PreparedData,
) -> str | None:
    """Quantize the published fp32 version; if its validation Dice holds, register and publish the INT8
    model as the next version (tags: precision, quantized_from, both Dice) and make it the champion, so
    serving takes it. Returns its version, or None when quantization would cost Dice."""
    from .quantize import quantized_candidate

    repo = options.model_repo
    if not repo:
        raise ValueError("an INT8 version is published beside its fp32 version: options.model_repo is needed")
    candidate = quantized_candidate(onnx_bytes, spec.size, prepared.train, prepared.val)
    for name in candidate.dice_fp32:
        client.log_metric(run_id, f"val_dice_original_res.{name}.fp32", candidate.dice_fp32[name])
        client.log_metric(run_id, f"val_dice_original_res.{name}.int8", candidate.dice_int8[name])
    print(candidate.verdict(), flush=True)
    if not candidate.accepted:
        client.set_model_version_tag(options.model_name, version, "int8", f"not published: {candidate.verdict()}")
        return None
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "model.onnx").write_bytes(candidate.onnx)
        client.log_artifact(run_id, str(Path(tmp) / "model.onnx"), "model_int8")
    source = client.get_model_version(options.model_name, version)
    int8 = client.create_model_version(
        options.model_name,
        f"{client.get_run(run_id).info.artifact_uri}/model_int8",
        run_id=run_id,
        tags={**source.tags, "quantized_from": version, "int8_verdict": candidate.verdict()},
    )
    published = publish(repo, options.model_name, int(int8.version), candidate.onnx, triton_config(options.model_name, spec))
    record_published(client, options.model_name, int8.version, published, candidate.onnx, "int8")
    client.set_registered_model_alias(options.model_name, CHAMPION, int8.version)
    print(f"exported INT8 version {int8.version} (from {version}) to {published}", flush=True)
    return str(int8.version)


def train(config: TrainConfig, options: RunOptions) -> RunSummary:
    prepared = prepare_dataset(config)
    fingerprint = prepared.fingerprint
    client, experiment_id = connect(options.experiment)
    ensure_ray(options.ray_address)
    run = client.create_run(
        experiment_id,
        tags={"mlflow.source.git.commit": git_commit(), "dataset_fingerprint": fingerprint, "mlflow.runName": config.name},
    )
    run_id = run.info.run_id
    for key, value in _params(config, prepared).items():
        client.log_param(run_id, key, value)
    _log_split(client, run_id, prepared)
    try:
        outcome = outcome_of(make_trainer(config, {"tracking_uri": tracking_uri(), "run_id": run_id}).fit())
        summary = finish_run(client, run_id, outcome, config, options, prepared)
    except BaseException as exc:
        client.set_terminated(run_id, "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")
        raise
    client.set_terminated(run_id, "FINISHED")
    return summary
