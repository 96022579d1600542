"""The training-job contract: what a run may be given, how that becomes a command line, what it prints back.

The control service validates a request with ``TrainingParameters`` and submits ``train_command``
as a Ray job; ``polyp-train`` builds its options from the same fields (defaults, bounds, help) and
prints a ``RunSummary`` as the last line of its output, which the control service reads back.
"""

from __future__ import annotations

import shlex

from pydantic import BaseModel, Field, ValidationError

from .repository import DEFAULT_MODEL_NAME

ARCHITECTURES = ("Unet", "UnetPlusPlus", "FPN", "Linknet", "PSPNet", "PAN", "MAnet", "DeepLabV3Plus")
TRAIN_PROGRAM = "polyp-train"


class TrainingParameters(BaseModel):
    """A training run's hyper-parameters; anything else is rejected."""

    model_config = {"extra": "forbid"}

    epochs: int = Field(10, ge=1, le=500)
    workers: int = Field(2, ge=1, le=64, description="Ray Train workers")
    batch_size: int = Field(8, ge=1, le=256)
    lr: float = Field(1e-3, gt=0, le=1, description="learning rate")
    arch: str = Field("Unet", pattern="^(" + "|".join(ARCHITECTURES) + ")$",
                      description="segmentation-models-pytorch architecture")
    encoder: str = Field("resnet34", pattern=r"^[a-z0-9_.\-]{2,64}$")
    size: int = Field(256, ge=32, le=1024, multiple_of=32, description="square letterboxed input side")
    seed: int = Field(0, ge=0)
    dice_threshold: float = Field(0.5, ge=0, le=1, description="quality gate: minimum validation Dice")

    def cli_args(self) -> list[str]:
        """``--epochs 10 --workers 2 ...``: the options polyp-train takes for these fields."""
        return [part for name in type(self).model_fields for part in (option(name), str(getattr(self, name)))]


DEFAULTS = TrainingParameters()


def option(field_name: str) -> str:
    return "--" + field_name.replace("_", "-")


def validation_message(error: ValidationError) -> str:
    """One line naming each bad option: 'epochs: Input should be greater than or equal to 1'."""
    return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors())


def train_command(params: TrainingParameters, data: str, model_repo: str, run_name: str) -> str:
    """The shell command a Ray job runs for one training run."""
    args = [TRAIN_PROGRAM, "train", "--data", data, "--model-repo", model_repo, *params.cli_args(), "--name", run_name]
    return shlex.join(args)


class RunSummary(BaseModel):
    """What a successful run reports, as the last line of its output (JSON)."""

    run_id: str
    model_name: str = DEFAULT_MODEL_NAME
    version: str
    val_dice: float
    val_iou: float
    champion: bool
    gate_reason: str
    dataset_fingerprint: str
    published: str | None
    parity_max_abs_diff: float | None

    def json_line(self) -> str:
        return self.model_dump_json()


def summary_from_output(output: str) -> RunSummary | None:
    """The run summary from a job's output: its last JSON line, or None if that is not a summary."""
    for line in reversed(output.strip().splitlines()):
        line = line.strip()
        if line.startswith("{") and line.endswith("}"):
            try:
                return RunSummary.model_validate_json(line)
            except ValidationError:
                return None
    return None
