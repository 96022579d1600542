"""Run the training loop on Ray Train (V2 API): a local Ray by default, a cluster when given an address."""

from __future__ import annotations

import os
import signal
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")  # before any ray.train import

from polyp_core.home import polyp_home
from polyp_core.job import DEFAULTS

from . import storage
from .model import ModelSpec
from .prepare import DEFAULT_VAL_FRACTION

if TYPE_CHECKING:
    # Ray's public names: with RAY_TRAIN_V2_ENABLED (set above) they are its V2 API at run time.
    from ray.train import Checkpoint, Result
    from ray.train.torch import TorchTrainer

    from .loop import LoopConfig


@dataclass
class TrainConfig:
    data: str | list[str]  # one source or several: `PATH`, `NAME=PATH` (see polyp_core.job.parse_source)
    epochs: int = DEFAULTS.epochs
    workers: int = DEFAULTS.workers
    spec: ModelSpec = field(default_factory=ModelSpec)
    batch_size: int = DEFAULTS.batch_size
    lr: float = DEFAULTS.lr
    val_fraction: float = DEFAULT_VAL_FRACTION
    skip_bad_pairs: bool = False  # leave out (and report) bad pairs instead of failing the run
    precision: str = DEFAULTS.precision  # auto | fp32 | bf16 | fp16: autocast (see hardware.autocast_precision)
    channels_last: bool = DEFAULTS.channels_last  # NHWC tensors: faster convolutions on CPUs (oneDNN) and tensor cores
    time_budget_min: float | None = None  # stop after the epoch that reaches it; the LR schedule spans it
    snapshots: dict | None = None  # {"dir": local folder, "minutes": [15, 30]}: weights when each is reached
    seed: int = DEFAULTS.seed
    cpus_per_worker: int | None = None  # default: the CPUs Ray has, shared between the workers
    gpu: bool = False
    storage_path: str = field(default_factory=lambda: str(polyp_home() / "ray-results"))  # a folder or s3://bucket/prefix
    cache_dir: str = field(default_factory=lambda: str(polyp_home() / "cache"))
    name: str = "polyp-train"

    @classmethod
    def from_recipe(cls, recipe: dict, data: str | list[str], spec: ModelSpec | None = None, **options: Any) -> TrainConfig:
        """A named recipe (polyp_train.presets) as a config: its model unless `spec` is given, its training
        settings, then `options` (storage_path, name, ...), which win."""
        settings = ("epochs", "workers", "batch_size", "lr", "precision", "channels_last", "time_budget_min")
        model = spec or ModelSpec(recipe["arch"], recipe["encoder"], recipe["size"])
        return cls(data=data, spec=model, **{key: recipe[key] for key in settings if key in recipe} | options)

    def sources(self) -> list[str]:
        return [self.data] if isinstance(self.data, str) else list(self.data)

    def loop_config(self, cpus_per_worker: int, mlflow: dict[str, str] | None) -> LoopConfig:
        from .loop import LoopConfig

        return LoopConfig(
            sources=tuple(self.sources()),
            skip_bad_pairs=self.skip_bad_pairs,
            epochs=self.epochs,
            spec=self.spec,
            batch_size=self.batch_size,
            lr=self.lr,
            val_fraction=self.val_fraction,
            seed=self.seed,
            threads=cpus_per_worker,
            precision=self.precision,
            channels_last=self.channels_last,
            time_budget_s=self.time_budget_min * 60 if self.time_budget_min else None,
            cache_dir=str(Path(self.cache_dir).resolve()),
            snapshots=self.snapshots,
            mlflow=mlflow,
        )


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def cancel_on_sigterm() -> None:
    """SIGTERM (a cancelled Ray job) stops the run like Ctrl-C: the run is marked KILLED, the exit code is 130."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)


def ensure_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Connect to RAY_ADDRESS / the given cluster, or start a local Ray (inside a Ray job, the job's cluster)."""
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=True)
    else:
        # "local": always a new local Ray, never a cluster some earlier `ray start` left recorded in /tmp/ray.
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=True)
    cancel_on_sigterm()  # ray.init installs its own handler, which aborts the process


def cpus_for_workers(config: TrainConfig) -> int:
    import ray

    if config.cpus_per_worker:
        return config.cpus_per_worker
    # Leave nothing idle: torch threads per worker = the worker's share of the cluster's CPUs.
    return max(1, int(ray.cluster_resources().get("CPU", 1)) // config.workers)


def make_trainer(
    config: TrainConfig, mlflow: dict[str, str] | None = None, loop_overrides: dict[str, Any] | None = None
) -> TorchTrainer:
    """A TorchTrainer for the run; loop_overrides replace LoopConfig fields (e.g. {"snapshots": {...}})."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from .loop import train_loop_per_worker

    cpus = cpus_for_workers(config)
    loop_config = replace(config.loop_config(cpus, mlflow), **(loop_overrides or {}))
    filesystem, path = storage.pyarrow_filesystem(config.storage_path)
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config=loop_config.as_train_loop_config(),
        scaling_config=ScalingConfig(
            num_workers=config.workers,
            use_gpu=config.gpu,
            resources_per_worker={"CPU": cpus, **({"GPU": 1} if config.gpu else {})},
        ),
        run_config=RunConfig(
            name=config.name,
            storage_path=path,
            storage_filesystem=filesystem,
            checkpoint_config=CheckpointConfig(
                num_to_keep=2, checkpoint_score_attribute="val_dice", checkpoint_score_order="max"
            ),
            failure_config=FailureConfig(max_failures=0),
        ),
    )


@dataclass
class TrainOutcome:
    metrics: dict  # the last epoch's metrics
    best_metrics: dict  # the epoch with the best validation Dice
    best_checkpoint: Checkpoint
    history: list[dict]  # every epoch's metrics, from the latest checkpoint (Ray always keeps it)


def outcome_of(result: Result) -> TrainOutcome:
    if result.error:
        raise result.error
    if not result.best_checkpoints or result.checkpoint is None or result.metrics is None:
        raise RuntimeError(f"the training run reported no checkpoint (results in {result.path})")
    best_checkpoint, best_metrics = max(result.best_checkpoints, key=lambda pair: pair[1]["val_dice"])
    from .loop import load_history

    with result.checkpoint.as_directory() as folder:
        history = load_history(Path(folder))
    return TrainOutcome(result.metrics, best_metrics, best_checkpoint, history)
