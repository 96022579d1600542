"""End to end on a tiny synthetic dataset with a local Ray (2 workers): MLflow, registry, gate, export, S3, tune."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from polyp_train import storage
from polyp_train.model import ModelSpec
from polyp_train.pipeline import RunOptions, train
from polyp_train.tracking import CHAMPION, connect, quality_gate
from polyp_train.trainer import TrainConfig

TINY = ModelSpec("Unet", "resnet18", 64)

pytestmark = [pytest.mark.ray, pytest.mark.training]


def tiny_config(data: str, tmp_path, **overrides) -> TrainConfig:
    settings = {
        "data": data,
        "epochs": 2,
        "workers": 2,
        "spec": TINY,
        "batch_size": 2,
        "val_fraction": 0.25,
        "seed": 1,
        "storage_path": str(tmp_path / "checkpoints"),
        "cache_dir": str(tmp_path / "cache"),
    }
    return TrainConfig(**{**settings, **overrides})


@pytest.fixture(scope="module")
def local_run(synthetic, ray_local, tmp_path_factory):
    """One run on local folders with the gate at 0, so it becomes champion and is exported (fp32 only:
    test_int8_is_published_as_the_next_version_only_when_its_dice_holds runs that step itself)."""
    tmp = tmp_path_factory.mktemp("local-run")
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.setenv("POLYP_HOME", str(tmp / "home"))
        summary = train(
            tiny_config(str(synthetic), tmp), RunOptions(dice_threshold=0.0, model_repo=str(tmp / "repo"), int8=False)
        )
        client, _ = connect("polyp-segmentation")
        yield summary, client, tmp


def test_run_holds_params_metrics_fingerprint_split_and_artifacts(local_run, synthetic, tmp_path):
    import json

    from polyp_train.prepare import prepare

    summary, client, _ = local_run
    run = client.get_run(summary.run_id)
    assert run.info.status == "FINISHED"
    prepared = prepare([str(synthetic)], tmp_path, 0.25)
    assert run.data.params["dataset_fingerprint"] == prepared.fingerprint == summary.dataset_fingerprint
    name = prepared.splits[0].name
    assert run.data.params[f"data.{name}.split"] == "file-name hash" and run.data.params[f"data.{name}.val"] == "3"
    split = json.loads(Path(client.download_artifacts(summary.run_id, "data/split.json", str(tmp_path))).read_text())
    assert split["datasets"][name]["val_stems"] == [s.stem for s in prepared.val] and split["left_out"] == []
    assert run.data.params["workers"] == "2" and run.data.params["encoder"] == "resnet18"
    assert run.data.tags["mlflow.source.git.commit"]
    history = client.get_metric_history(summary.run_id, "val_dice")
    assert [m.step for m in history] == [1, 2] and all(0 <= m.value <= 1 for m in history)
    assert {"train_loss", "val_loss", "val_iou", "best_val_dice", "onnx_parity_max_abs_diff"} <= set(run.data.metrics)
    artifacts = {a.path for a in client.list_artifacts(summary.run_id, "plots")}
    assert artifacts == {"plots/learning_curves.png", "plots/validation_overlays.png"}


def test_version_registered_champion_and_exported(local_run):
    summary, client, tmp = local_run
    assert summary.version == "1" and summary.champion
    version = client.get_model_version_by_alias("polyp-segmenter", CHAMPION)
    assert str(version.version) == "1" and version.tags["quality_gate"] == "passed"
    assert version.tags["dataset_fingerprint"] == summary.dataset_fingerprint
    model_dir = tmp / "repo" / "polyp-segmenter"
    assert sorted(p.name for p in model_dir.iterdir()) == ["1", "config.pbtxt", "configs"]
    assert summary.parity_max_abs_diff < 1e-3 and summary.int8_version is None
    assert version.tags["precision"] == "fp32"
    assert version.tags["onnx_sha256"] == hashlib.sha256((model_dir / "1" / "model.onnx").read_bytes()).hexdigest()


def test_exported_model_segments_a_real_frame(local_run, kvasir_samples):
    import onnxruntime as ort

    from polyp_core.preprocess import preprocess, restore_mask

    _, _, tmp = local_run
    session = ort.InferenceSession(str(tmp / "repo" / "polyp-segmenter" / "1" / "model.onnx"))
    frame = Image.open(sorted((kvasir_samples / "images").iterdir())[0])
    tensor, box = preprocess(frame, 64)
    logits = session.run(None, {"image": tensor[None]})[0][0, 0]
    mask = restore_mask(1 / (1 + np.exp(-logits)), box)
    assert mask.shape == (frame.height, frame.width)


def test_quality_gate_both_branches(local_run):
    _summary, client, _ = local_run
    first = client.get_model_version("polyp-segmenter", "1")
    second = client.create_model_version("polyp-segmenter", first.source, run_id=first.run_id)
    champion_dice = float(first.tags["val_dice"])

    below_threshold = quality_gate(client, "polyp-segmenter", str(second.version), 0.2, threshold=0.9)
    assert not below_threshold.promoted and "below the threshold 0.9000" in below_threshold.reason
    below_champion = quality_gate(client, "polyp-segmenter", str(second.version), champion_dice - 0.01, threshold=0.0)
    assert not below_champion.promoted and "below champion version 1" in below_champion.reason
    tags = client.get_model_version("polyp-segmenter", second.version).tags
    assert tags["quality_gate"] == "rejected" and tags["quality_gate_reason"] == below_champion.reason
    assert str(client.get_model_version_by_alias("polyp-segmenter", CHAMPION).version) == "1"

    better = quality_gate(client, "polyp-segmenter", str(second.version), champion_dice + 0.01, threshold=0.0)
    assert better.promoted
    assert str(client.get_model_version_by_alias("polyp-segmenter", CHAMPION).version) == str(second.version)


def test_rejected_version_is_not_published(synthetic, ray_local, tmp_path, mlflow_home):
    summary = train(
        tiny_config(str(synthetic), tmp_path, epochs=1), RunOptions(dice_threshold=0.999, model_repo=str(tmp_path / "repo"))
    )
    assert not summary.champion and summary.published is None and "below the threshold" in summary.gate_reason
    assert not (tmp_path / "repo").exists()


def test_s3_dataset_checkpoints_and_model_repository(synthetic, ray_local, s3_server, tmp_path, mlflow_home):
    client = storage.s3_client()
    for bucket in ("datasets", "ray", "models"):
        client.create_bucket(Bucket=bucket)
    storage.upload_dir(synthetic, "s3://datasets/kvasir-synthetic")
    config = tiny_config("s3://datasets/kvasir-synthetic", tmp_path, epochs=1, storage_path="s3://ray/checkpoints")
    summary = train(config, RunOptions(dice_threshold=0.0, model_repo="s3://models/triton", int8=False))
    assert summary.published == f"s3://models/triton/polyp-segmenter/{summary.version}"
    assert sorted(storage.list_objects("s3://models/triton")) == [
        f"polyp-segmenter/{summary.version}/model.onnx",
        "polyp-segmenter/config.pbtxt",
        f"polyp-segmenter/configs/pin-{summary.version}.pbtxt",
    ]
    checkpoints = storage.list_objects("s3://ray/checkpoints")
    assert any(key.endswith("model.pt") for key in checkpoints), checkpoints


def test_tune_registers_the_best_trial(synthetic, ray_local, tmp_path, mlflow_home):
    from polyp_train.tune import tune

    summary = tune(tiny_config(str(synthetic), tmp_path, epochs=1), RunOptions(dice_threshold=0.0), trials=2)
    client, experiment_id = connect("polyp-segmentation")
    runs = client.search_runs([experiment_id])
    parents = [r for r in runs if r.info.run_name.endswith("-sweep")]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert len(parents) == 1 and len(children) == 2
    # The registered trial has the best Dice (two one-epoch trials may tie: either is then right).
    [chosen] = [r for r in children if r.info.run_id == summary.run_id]
    assert chosen.data.metrics["val_dice"] == max(r.data.metrics["val_dice"] for r in children)
    assert parents[0].data.tags["best_run_id"] == summary.run_id
    assert client.get_model_version("polyp-segmenter", summary.version).run_id == summary.run_id


def test_bf16_channels_last_under_a_time_budget_reports_each_dataset(synthetic, ray_local, tmp_path, monkeypatch):
    """Two datasets, bfloat16 autocast, NHWC, and a budget shorter than one epoch: the run stops after
    epoch 1 of 5 on every worker, with validation Dice per dataset, and the snapshot at its mark."""
    from polyp_train.trainer import make_trainer, outcome_of

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    snapshots = tmp_path / "snapshots"
    snapshots.mkdir()
    config = tiny_config(
        [f"a={synthetic}", f"b={synthetic}"], tmp_path, epochs=5, precision="bf16", channels_last=True, time_budget_min=0.001
    )
    outcome = outcome_of(make_trainer(config, loop_overrides={"snapshots": {"dir": str(snapshots), "minutes": [0]}}).fit())
    assert [m["epoch"] for m in outcome.history] == [1]
    assert {"val_dice.a", "val_dice.b"} <= set(outcome.history[0]) and outcome.history[0]["val_dice.a"] == pytest.approx(
        outcome.history[0]["val_dice.b"]
    )
    assert (snapshots / "after-0-min.pt").is_file()


def test_the_learning_rate_warms_up_then_anneals_to_zero():
    from polyp_train.loop import cosine_lr

    assert cosine_lr(1.0, 0.0) < cosine_lr(1.0, 0.03) == pytest.approx(1.0)
    assert cosine_lr(1.0, 0.5) == pytest.approx(0.5, abs=0.03) and cosine_lr(1.0, 1.0) == pytest.approx(0.0, abs=1e-9)
    assert cosine_lr(1.0, 2.0) == pytest.approx(0.0, abs=1e-9), "past the budget it stays at zero"


def test_int8_is_published_as_the_next_version_only_when_its_dice_holds(local_run, synthetic, monkeypatch):
    """Real quantization and scoring of the run's fp32 model; the tolerance decides (last in this module:
    it moves the champion alias)."""
    import onnx

    from polyp_train import quantize
    from polyp_train.pipeline import publish_int8
    from polyp_train.prepare import prepare

    summary, client, tmp = local_run
    prepared = prepare([str(synthetic)], tmp / "int8-cache", 0.25)
    fp32 = (tmp / "repo" / "polyp-segmenter" / "1" / "model.onnx").read_bytes()
    options = RunOptions(dice_threshold=0.0, model_repo=str(tmp / "repo"))

    monkeypatch.setattr(quantize, "MAX_DICE_LOSS", -1.0)  # no INT8 model can hold its Dice
    assert publish_int8(client, summary.run_id, options, "1", fp32, TINY, prepared) is None
    assert client.get_model_version("polyp-segmenter", "1").tags["int8"].startswith("not published: validation")
    before = {p.name for p in (tmp / "repo" / "polyp-segmenter").iterdir()}

    monkeypatch.setattr(quantize, "MAX_DICE_LOSS", 1.0)  # any INT8 model does
    version = publish_int8(client, summary.run_id, options, "1", fp32, TINY, prepared)
    assert {p.name for p in (tmp / "repo" / "polyp-segmenter").iterdir()} - before == {version}
    tags = client.get_model_version("polyp-segmenter", version).tags
    assert (tags["precision"], tags["quantized_from"]) == ("int8", "1") and "INT8" in tags["int8_verdict"]
    assert tags["dataset_fingerprint"] == summary.dataset_fingerprint
    assert str(client.get_model_version_by_alias("polyp-segmenter", CHAMPION).version) == version, "served next"
    published = onnx.load(str(tmp / "repo" / "polyp-segmenter" / version / "model.onnx"))
    assert "QuantizeLinear" in {node.op_type for node in published.graph.node}
    metrics = client.get_run(summary.run_id).data.metrics
    name = prepared.splits[0].name
    assert {f"val_dice_original_res.{name}.fp32", f"val_dice_original_res.{name}.int8"} <= set(metrics)
