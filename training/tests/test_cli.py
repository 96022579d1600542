"""polyp-train as a user runs it: exit codes and messages for bad input, cancellation."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import time

import pytest

from polyp_core.job import DEFAULTS, TrainingParameters, train_command
from polyp_train.cli import _configs, build_parser
from polyp_train.model import ModelSpec


def run_cli(*args, env=None, cwd=None, timeout=120):
    return subprocess.run(
        [sys.executable, "-m", "polyp_train.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        timeout=timeout,
    )


def _parsed(params: TrainingParameters):
    command = shlex.split(train_command(params, "/data/kvasir", "/models", "run-1"))
    assert command[0] == "polyp-train"
    config, options = _configs(build_parser().parse_args(command[1:]))
    return (
        config.epochs,
        config.workers,
        config.batch_size,
        config.lr,
        config.spec,
        config.seed,
        config.precision,
        config.channels_last,
        config.time_budget_min,
        options.dice_threshold,
        options.model_repo,
        config.data,
        config.name,
    )


@pytest.mark.parametrize(
    "params",
    [
        DEFAULTS,
        TrainingParameters(
            epochs=3,
            workers=2,
            batch_size=4,
            lr=0.01,
            arch="FPN",
            encoder="resnet34",
            size=128,
            seed=7,
            precision="fp32",
            channels_last=False,
            time_budget_min=2.5,
            dice_threshold=0.6,
        ),
    ],
)
def test_the_control_services_command_means_the_same_to_polyp_train(params):
    """The job contract end to end: what the API accepted is what the training run gets."""
    assert _parsed(params) == (
        params.epochs,
        params.workers,
        params.batch_size,
        params.lr,
        ModelSpec(params.arch, params.encoder, params.size),
        params.seed,
        params.precision,
        params.channels_last,
        params.time_budget_min,
        params.dice_threshold,
        "/models",
        ["/data/kvasir"],
        "run-1",
    )


def test_polyp_train_defaults_are_the_contracts():
    config, options = _configs(build_parser().parse_args(["train", "--data", "/d"]))
    assert (config.epochs, config.workers, config.batch_size, config.lr, config.seed, options.dice_threshold) == (
        DEFAULTS.epochs,
        DEFAULTS.workers,
        DEFAULTS.batch_size,
        DEFAULTS.lr,
        DEFAULTS.seed,
        DEFAULTS.dice_threshold,
    )
    assert config.spec == ModelSpec(DEFAULTS.arch, DEFAULTS.encoder, DEFAULTS.size)
    assert (config.precision, config.channels_last, config.time_budget_min) == (
        DEFAULTS.precision,
        DEFAULTS.channels_last,
        DEFAULTS.time_budget_min,
    )


def test_make_synthetic(tmp_path):
    result = run_cli("make-synthetic", "--n", "3", "--size", "48", "--out", str(tmp_path / "ds"))
    assert result.returncode == 0, result.stderr
    assert len(list((tmp_path / "ds" / "images").iterdir())) == 3 and len(list((tmp_path / "ds" / "masks").iterdir())) == 3


@pytest.mark.training  # each starts polyp-train with torch and Ray imported: ~10 s
@pytest.mark.parametrize(
    "breakage, code, message",
    [
        (lambda d: (d / "masks" / "synthetic-00001.png").unlink(), 3, "have no mask"),
        (lambda d: (d / "images" / "synthetic-00002.jpg").write_bytes(b"\xff\xd8 broken"), 3, "unreadable file"),
        (lambda d: [p.unlink() for p in [*(d / "images").iterdir(), *(d / "masks").iterdir()]], 3, "holds no images"),
        (lambda d: shutil.rmtree(d / "images"), 3, "has no images/ folder"),
    ],
)
def test_bad_dataset_exits_3_with_a_message(synthetic, tmp_path, breakage, code, message):
    data = shutil.copytree(synthetic, tmp_path / "data")
    breakage(data)
    result = run_cli("train", "--data", str(data), "--epochs", "1", cwd=tmp_path)
    assert result.returncode == code and message in result.stderr and "Traceback" not in result.stderr


@pytest.mark.training
def test_unreachable_tracking_server_exits_4(synthetic, tmp_path):
    result = run_cli(
        "train", "--data", str(synthetic), "--epochs", "1", cwd=tmp_path, env={"MLFLOW_TRACKING_URI": "http://127.0.0.1:9"}
    )
    assert result.returncode == 4 and "MLflow tracking at http://127.0.0.1:9 is unreachable" in result.stderr


@pytest.mark.training
def test_unreachable_storage_exits_5(tmp_path):
    result = run_cli(
        "train",
        "--data",
        "s3://datasets/kvasir",
        "--epochs",
        "1",
        cwd=tmp_path,
        env={
            "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
            "AWS_ACCESS_KEY_ID": "x",
            "AWS_SECRET_ACCESS_KEY": "x",
            "AWS_DEFAULT_REGION": "us-east-1",
        },
    )
    assert result.returncode == 5 and "cannot reach s3://datasets/kvasir" in result.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--epochs", "0"], "epochs: Input should be greater than or equal to 1"),
        (["--size", "100"], "size: Input should be a multiple of 32"),
        (["--val-fraction", "1.5"], "must be between 0 and 1"),
    ],
)
def test_bad_arguments_exit_2(synthetic, args, message):
    result = run_cli("train", "--data", str(synthetic), *args)
    assert result.returncode == 2 and message in result.stderr


@pytest.mark.training
def test_unknown_encoder_exits_2_before_ray_starts(synthetic, tmp_path):
    result = run_cli("train", "--data", str(synthetic), "--encoder", "resnet9000", cwd=tmp_path)
    assert result.returncode == 2 and "cannot build Unet with encoder resnet9000" in result.stderr


@pytest.mark.training
@pytest.mark.ray
def test_sigterm_cancels_a_run_and_marks_it_killed(synthetic, tmp_path):
    """What the control service's cancel does to a Ray job's entrypoint."""
    home = tmp_path / "home"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "polyp_train.cli",
            "train",
            "--data",
            str(synthetic),
            "--epochs",
            "50",
            "--workers",
            "1",
            "--size",
            "64",
            "--encoder",
            "resnet18",
            "--batch-size",
            "2",
        ],
        cwd=tmp_path,
        env={**os.environ, "POLYP_HOME": str(home), "MLFLOW_TRACKING_URI": ""},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.time() + 240
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if "epoch 1/50" in line or time.time() > deadline:
            break
    assert any("epoch 1/50" in line for line in seen), "".join(seen[-20:])
    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, rest[-2000:]
    assert "polyp-train: cancelled" in rest

    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    [run] = client.search_runs([client.get_experiment_by_name("polyp-segmentation").experiment_id])
    assert run.info.status == "KILLED"


def test_a_preset_sets_the_recipe_and_explicit_options_win():
    config, _ = _configs(
        build_parser("cpu-fast").parse_args(["train", "--preset", "cpu-fast", "--data", "/d", "--encoder", "resnet34"])
    )
    assert (config.spec.encoder, config.spec.size, config.workers) == ("resnet34", 192, 1)
    assert (config.precision, config.channels_last, config.time_budget_min) == ("auto", True, 60.0)
    plain, _ = _configs(build_parser().parse_args(["train", "--data", "/d", "--no-channels-last", "--precision", "fp32"]))
    assert (plain.precision, plain.channels_last, plain.time_budget_min) == ("fp32", False, None)


def test_an_unknown_preset_is_refused():
    result = run_cli("train", "--preset", "fastest", "--data", "/d")
    assert result.returncode == 2 and "invalid choice: 'fastest'" in result.stderr


def test_auto_precision_is_bf16_only_where_the_cpu_has_it(monkeypatch):
    from polyp_train import hardware

    monkeypatch.setattr(hardware, "cpu_has_bf16", lambda: True)
    assert hardware.autocast_precision("auto", "cpu") == "bf16"
    monkeypatch.setattr(hardware, "cpu_has_bf16", lambda: False)
    assert hardware.autocast_precision("auto", "cpu") == "fp32"
    assert hardware.autocast_precision("fp16", "cpu") == "fp16", "an explicit choice is kept"
