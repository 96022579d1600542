"""The training-job contract: what a run may be given, how that becomes a command line, what it prints back.

The control service validates a request with ``TrainingParameters`` and submits ``train_command``
as a Ray job; ``polyp-train`` builds its options from the same fields (defaults, bounds, help) and
prints a ``RunSummary`` as the last line of its output, which the control service reads back.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .repository import DEFAULT_MODEL_NAME

ARCHITECTURES = ("Unet", "UnetPlusPlus", "FPN", "Linknet", "PSPNet", "PAN", "MAnet", "DeepLabV3Plus")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
TRAIN_PROGRAM = "polyp-train"
_SOURCE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


@dataclass(frozen=True)
class DataSource:
    name: str
    uri: str


def parse_source(text: str) -> DataSource:
    """A run's `--data`: `NAME=URI`, or a bare URI named after its last path component. Training reads its
    datasets through this, and the control service checks a run's location through it: one reading of both."""
    name, sep, uri = text.partition("=")
    if sep and _SOURCE_NAME.fullmatch(name):
        return DataSource(name, uri)
    stem = Path(text.rstrip("/")).stem or "data"
    return DataSource(re.sub(r"[^A-Za-z0-9_.-]", "-", stem), text)


class TrainingParameters(BaseModel):
    """A training run's hyper-parameters; anything else is rejected.

    The defaults are the CPU recipe measured fastest to a good Dice on a 2-core machine (see
    polyp_train.presets, cpu-fast): `make up`'s first run passes the quality gate in about two minutes.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # JSON has no NaN; Python's json.loads does

    epochs: int = Field(10, ge=1, le=500)
    workers: int = Field(
        1, ge=1, le=64, description="Ray Train workers (one per node or GPU; two on one small machine only add communication)"
    )
    batch_size: int = Field(8, ge=1, le=256)
    lr: float = Field(2e-3, gt=0, le=1, description="peak learning rate (cosine schedule)")
    arch: str = Field(
        "Unet", pattern="^(" + "|".join(ARCHITECTURES) + ")$", description="segmentation-models-pytorch architecture"
    )
    encoder: str = Field("resnet18", pattern=r"^[a-z0-9_.\-]{2,64}$")
    size: int = Field(192, ge=32, le=1024, multiple_of=32, description="square letterboxed input side")
    precision: str = Field(
        "auto",
        pattern="^(" + "|".join(PRECISIONS) + ")$",
        description="autocast: auto is bf16 where the CPU (AVX-512 BF16, AMX) or GPU has it, else fp32; fp16 on GPUs",
    )
    channels_last: bool = Field(True, description="NHWC tensors: faster convolutions on CPUs and tensor cores")
    time_budget_min: float | None = Field(
        None,
        ge=1,
        le=10080,
        description="stop after the epoch that reaches this many minutes of training; the learning rate anneals over it",
    )
    seed: int = Field(0, ge=0)
    dice_threshold: float = Field(0.5, ge=0, le=1, description="quality gate: minimum validation Dice")

    def cli_args(self) -> list[str]:
        """``--epochs 10 --workers 1 --channels-last ...``: the options polyp-train takes for these fields."""
        args = []
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, bool):
                args.append(option(name) if value else "--no-" + option(name)[2:])
            elif value is not None:
                args += [option(name), str(value)]
        return args


DEFAULTS = TrainingParameters()


def option(field_name: str) -> str:
    return "--" + field_name.replace("_", "-")


def validation_message(error: ValidationError) -> str:
    """One line naming each bad option: 'epochs: Input should be greater than or equal to 1'."""
    return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors())


def train_command(params: TrainingParameters, data: str | list[str], model_repo: str, run_name: str) -> str:
    """The shell command a Ray job runs for one training run; several datasets train together."""
    sources = [data] if isinstance(data, str) else data
    args = [
        TRAIN_PROGRAM,
        "train",
        *(part for source in sources for part in ("--data", source)),
        "--model-repo",
        model_repo,
        *params.cli_args(),
        "--name",
        run_name,
    ]
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
    int8_version: str | None = None  # the INT8 version published from this one (quantized, Dice within 0.01)

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
