"""The contract between training and serving: job parameters, run summary, repository layout."""

from __future__ import annotations

import shlex

import pytest
from pydantic import ValidationError

from polyp_core import repository
from polyp_core.job import DEFAULTS, RunSummary, TrainingParameters, summary_from_output, train_command, validation_message

SUMMARY = RunSummary(
    run_id="abc",
    version="3",
    val_dice=0.81,
    val_iou=0.7,
    champion=True,
    gate_reason="first model",
    dataset_fingerprint="f" * 16,
    published="/repo/polyp-segmenter/3",
    parity_max_abs_diff=1e-5,
)


def test_train_command_carries_every_parameter_as_an_option():
    params = TrainingParameters(epochs=3, lr=0.01, size=128, arch="FPN", time_budget_min=30)
    args = shlex.split(train_command(params, "/data/kvasir", "s3://models/triton", "run-1"))
    assert args[:2] == ["polyp-train", "train"]
    assert "--channels-last" in args  # a switch: present for True, --no-channels-last for False
    args.remove("--channels-last")
    options = dict(zip(args[2::2], args[3::2], strict=True))
    assert options["--data"] == "/data/kvasir" and options["--model-repo"] == "s3://models/triton"
    assert options["--name"] == "run-1"
    for name in set(TrainingParameters.model_fields) - {"channels_last"}:
        assert options["--" + name.replace("_", "-")] == str(getattr(params, name))
    assert "--no-channels-last" in train_command(params.model_copy(update={"channels_last": False}), "/d", "/r", "n")
    assert "--time-budget-min" not in train_command(DEFAULTS, "/d", "/r", "n"), "no budget: the option is left out"


def test_a_dataset_path_cannot_inject_shell_words():
    args = shlex.split(train_command(DEFAULTS, "/data/x; rm -rf /", "/repo", "run-1"))
    assert args[args.index("--data") + 1] == "/data/x; rm -rf /"


@pytest.mark.parametrize(
    "bad, field",
    [
        ({"epochs": 0}, "epochs"),
        ({"size": 100}, "size"),
        ({"arch": "Resnet"}, "arch"),
        ({"lr": 0}, "lr"),
        ({"colour": "red"}, "colour"),
        ({"precision": "int4"}, "precision"),
        ({"time_budget_min": 0}, "time_budget_min"),
        ({"time_budget_min": 5e-324}, "time_budget_min"),
    ],
)
def test_out_of_contract_parameters_are_named(bad, field):
    with pytest.raises(ValidationError) as caught:
        TrainingParameters(**bad)
    assert validation_message(caught.value).startswith(f"{field}: ")


def test_the_summary_is_the_last_json_line_of_the_output():
    output = f'epoch 1 ...\n{{"not": "a summary"}}\nexported version 3\n{SUMMARY.json_line()}\n'
    assert summary_from_output(output) == SUMMARY


@pytest.mark.parametrize("output", ["", "training failed\n", '{"run_id": "abc"}\n', "{broken json}\n"])
def test_output_without_a_summary_gives_none(output):
    assert summary_from_output(output) is None


def test_repository_lists_only_whole_numeric_versions(tmp_path):
    model = tmp_path / "m"
    for folder, whole in [("1", True), ("2", False), ("10", True), (".staging-11-ab", True), ("latest", True)]:
        (model / folder).mkdir(parents=True)
        if whole:
            (model / folder / repository.MODEL_FILE).write_bytes(b"onnx")
    assert repository.published_versions(tmp_path, "m") == [1, 10]
    assert repository.newest_version(tmp_path, "m") == 10
    assert repository.newest_version(tmp_path, "absent") is None
    assert repository.model_file(tmp_path, "m", 10) == model / "10" / "model.onnx"


def test_triton_config_names_the_contract_tensors_and_size():
    config = repository.triton_config("polyp-segmenter", 160, "Unet/resnet34", max_batch_size=4)
    assert 'name: "polyp-segmenter"' in config and "max_batch_size: 4" in config
    assert f'name: "{repository.INPUT_NAME}"' in config and "dims: [ 3, 160, 160 ]" in config
    assert f'name: "{repository.OUTPUT_NAME}"' in config and "dims: [ 1, 160, 160 ]" in config
