"""The per-worker training loop Ray Train runs (one process per worker, DDP between them)."""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Subset

from .dataset import SegmentationDataset
from .hardware import autocast_precision
from .metrics import dice_bce_loss, per_image_scores
from .model import ModelSpec, build_model
from .prepare import prepare

CHECKPOINT_FILE = "model.pt"
SPEC_FILE = "model_spec.json"
HISTORY_FILE = "history.json"  # every epoch's metrics so far (Ray keeps only some checkpoints' metrics)
LOOP_CONFIG_KEY = "loop"  # Ray Train's train_loop_config must be a dict: {"loop": LoopConfig(...)}

EpochLogger = Callable[[dict[str, float], int], None]


@dataclass(frozen=True)
class LoopConfig:
    """What every worker's loop reads: built on the driver (TrainConfig.loop_config), pickled to the workers."""

    sources: tuple[str, ...]  # `PATH` or `NAME=PATH` (see polyp_core.job.parse_source)
    epochs: int
    spec: ModelSpec
    batch_size: int
    lr: float
    val_fraction: float
    seed: int
    threads: int  # torch threads per worker
    cache_dir: str  # absolute: the workers' working directory is not the driver's
    skip_bad_pairs: bool = False
    precision: str = "fp32"  # auto | fp32 | bf16 | fp16 (see hardware.autocast_precision)
    channels_last: bool = False
    time_budget_s: float | None = None  # the run stops after the epoch that reaches it; the LR schedule spans it
    snapshots: dict[str, Any] | None = None  # {"dir": local folder, "minutes": [15, 30]}: weights at each mark
    mlflow: dict[str, str] | None = None  # {"tracking_uri": ..., "run_id": ...}: the driver's MLflow run

    def as_train_loop_config(self) -> dict[str, LoopConfig]:
        return {LOOP_CONFIG_KEY: self}

    @staticmethod
    def of(train_loop_config: dict[str, Any]) -> LoopConfig:
        """The LoopConfig inside Ray Train's train_loop_config (see as_train_loop_config)."""
        config = train_loop_config.get(LOOP_CONFIG_KEY)
        if not isinstance(config, LoopConfig):
            raise TypeError(f"train_loop_config must be {{{LOOP_CONFIG_KEY!r}: LoopConfig(...)}}, got {train_loop_config!r}")
        return config


@dataclass(frozen=True)
class ValSums:
    """Validation sums over some images: one worker's shard of one dataset, or (added, all-reduced) more.
    Sums, not means, so that shards and datasets add up to exact metrics."""

    loss_sum: float = 0.0  # loss x images
    dice_sum: float = 0.0
    iou_sum: float = 0.0
    count: float = 0.0  # images

    WIDTH: ClassVar[int] = 4  # len(as_list())

    def __add__(self, other: ValSums) -> ValSums:
        return ValSums(
            self.loss_sum + other.loss_sum,
            self.dice_sum + other.dice_sum,
            self.iou_sum + other.iou_sum,
            self.count + other.count,
        )

    @classmethod
    def total(cls, parts: Iterable[ValSums]) -> ValSums:
        result = cls()
        for part in parts:
            result = result + part
        return result

    def as_list(self) -> list[float]:
        return [self.loss_sum, self.dice_sum, self.iou_sum, self.count]

    @classmethod
    def from_list(cls, values: Sequence[float]) -> ValSums:
        loss_sum, dice_sum, iou_sum, count = values
        return cls(loss_sum, dice_sum, iou_sum, count)

    @property
    def loss(self) -> float:
        return self.loss_sum / max(self.count, 1)

    @property
    def dice(self) -> float:
        return self.dice_sum / max(self.count, 1)

    @property
    def iou(self) -> float:
        return self.iou_sum / max(self.count, 1)


@dataclass(frozen=True)
class TrainSums:
    """One epoch of training on one worker."""

    loss_sum: float  # loss x images
    seen: float  # images
    seconds: float


@dataclass(frozen=True)
class EpochSums:
    """One epoch's sums, on one worker or all-reduced over all of them (in one collective)."""

    train_loss_sum: float
    train_seen: float
    over_budget: bool  # after the reduce: on any worker, so every worker stops after the same epoch
    val: dict[str, ValSums]  # per dataset, in the same order on every worker

    def as_list(self) -> list[float]:
        values = [self.train_loss_sum, self.train_seen, float(self.over_budget)]
        for sums in self.val.values():
            values += sums.as_list()
        return values

    def with_values(self, values: Sequence[float]) -> EpochSums:
        """The same datasets with the numbers of `values` (laid out like as_list)."""
        train_loss_sum, train_seen, over_budget, *rest = values
        width = ValSums.WIDTH
        val = {name: ValSums.from_list(rest[width * i : width * (i + 1)]) for i, name in enumerate(self.val)}
        return EpochSums(train_loss_sum, train_seen, over_budget > 0, val)

    def all_reduced(self) -> EpochSums:
        return self.with_values(_all_reduce(self.as_list()))


def save_checkpoint(folder: Path, model: torch.nn.Module, spec: ModelSpec, history: list[dict]) -> None:
    torch.save(model.state_dict(), folder / CHECKPOINT_FILE)
    (folder / SPEC_FILE).write_text(json.dumps(spec.as_dict()))
    (folder / HISTORY_FILE).write_text(json.dumps(history))


def load_history(folder: Path) -> list[dict]:
    history: list[dict] = json.loads((Path(folder) / HISTORY_FILE).read_text())
    return history


def load_checkpoint(folder: Path) -> tuple[torch.nn.Module, ModelSpec]:
    spec = ModelSpec(**json.loads((Path(folder) / SPEC_FILE).read_text()))
    model = build_model(spec)
    model.load_state_dict(torch.load(Path(folder) / CHECKPOINT_FILE, map_location="cpu", weights_only=True))
    return model.eval(), spec


def _all_reduce(values: list[float]) -> list[float]:
    tensor = torch.tensor(values, dtype=torch.float64)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(tensor)
    reduced: list[float] = tensor.tolist()
    return reduced


def _autocast(device: torch.device, precision: str) -> torch.autocast:
    """bfloat16 (CPUs with AVX-512 BF16/AMX, recent GPUs) or float16 (GPUs) autocast; fp32 is off."""
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


def _to(
    images: torch.Tensor, masks: torch.Tensor, device: torch.device, channels_last: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    images = images.to(device)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    return images, masks.to(device)


def evaluate(
    model: torch.nn.Module, loader: DataLoader, device: torch.device, precision: str = "fp32", channels_last: bool = False
) -> ValSums:
    """Sums over this worker's shard."""
    model.eval()
    loss_sum = dice_sum = iou_sum = count = 0.0
    with torch.no_grad():
        for images, masks in loader:
            images, masks = _to(images, masks, device, channels_last)
            with _autocast(device, precision):
                logits = model(images)
            logits = logits.float()
            dice, iou = per_image_scores(logits, masks)
            loss_sum += dice_bce_loss(logits, masks).item() * len(images)
            dice_sum += dice.sum().item()
            iou_sum += iou.sum().item()
            count += len(images)
    return ValSums(loss_sum, dice_sum, iou_sum, count)


def cosine_lr(base: float, progress: float, warmup: float = 0.03) -> float:
    """Learning rate at a fraction of the run: a short linear warm-up, then cosine to zero."""
    if progress < warmup:
        return base * max(progress / warmup, 0.05)
    return base * 0.5 * (1 + math.cos(math.pi * min(1.0, (progress - warmup) / (1 - warmup))))


@dataclass
class _Clock:
    """Wall time since training began, against the run's budget (if it has one)."""

    budget_s: float | None
    started: float = field(default_factory=time.perf_counter)

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def over_budget(self) -> bool:
        if not self.budget_s:
            return False
        return self.elapsed() >= self.budget_s

    def progress(self, epoch: int, step: int, steps_per_epoch: int, epochs: int) -> float:
        """How far through the run: by wall time under a budget (its end is known, not its epoch count),
        else by epoch."""
        if self.budget_s:
            return self.elapsed() / self.budget_s
        return (epoch - 1 + step / steps_per_epoch) / epochs


@dataclass
class _Worker:
    """One worker's model and what trains it."""

    world: int
    device: torch.device
    model: torch.nn.Module  # wrapped by Ray (DDP) when there are several workers
    precision: str  # what autocast runs: fp32 | bf16 | fp16
    channels_last: bool
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler

    @property
    def bare_model(self) -> torch.nn.Module:
        module: torch.nn.Module = getattr(self.model, "module", self.model)
        return module


def train_loop_per_worker(train_loop_config: dict[str, Any]) -> None:
    """Ray Train's entry point on every worker; train_loop_config is {"loop": LoopConfig(...)}."""
    import ray.train

    config = LoopConfig.of(train_loop_config)
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    torch.set_num_threads(max(1, int(config.threads)))
    torch.manual_seed(config.seed + rank)

    train_loader, val_loaders = _data_loaders(config, rank, world)
    worker = _set_up_worker(config, rank, world)
    reporter = _Reporter(config, rank)
    clock = _Clock(config.time_budget_s)
    for epoch in range(1, config.epochs + 1):
        train = _train_epoch(worker, train_loader, config, clock, epoch)
        # Every worker must stop after the same epoch: the budget decision is all-reduced with the sums.
        totals = _validate(worker, val_loaders, train, over_budget=clock.over_budget())
        metrics = _epoch_metrics(epoch, totals, train, clock)
        reporter.report(epoch, metrics, worker.bare_model)
        if epoch == config.epochs or totals.over_budget:
            break


def _data_loaders(config: LoopConfig, rank: int, world: int) -> tuple[DataLoader, dict[str, DataLoader]]:
    """This worker's training loader (sharded by Ray) and its shard of each dataset's validation frames."""
    import ray.train.torch

    size = config.spec.size
    prepared = prepare(list(config.sources), Path(config.cache_dir), config.val_fraction, config.skip_bad_pairs)
    train_set = SegmentationDataset(prepared.train, size, train=True, seed=config.seed + rank)
    # Validation is sharded by hand (no padding duplicates) and the sums are all-reduced: exact metrics,
    # per dataset (a run on Kvasir-SEG + CVC-ClinicDB reports both).
    val_loaders = {}
    for part in prepared.splits:
        shard = Subset(SegmentationDataset(part.val, size, train=False), range(rank, len(part.val), world))
        val_loaders[part.name] = DataLoader(shard, batch_size=config.batch_size)
    train_loader = ray.train.torch.prepare_data_loader(
        DataLoader(train_set, batch_size=config.batch_size, shuffle=True, drop_last=len(train_set) > config.batch_size)
    )
    return train_loader, val_loaders


def _set_up_worker(config: LoopConfig, rank: int, world: int) -> _Worker:
    """The model (on this worker's device, wrapped for DDP), its optimizer and the autocast precision."""
    import ray.train.torch

    model = build_model(config.spec)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    model = ray.train.torch.prepare_model(model)
    device = ray.train.torch.get_device()
    precision = autocast_precision(config.precision, device.type)
    if rank == 0:
        print(f"autocast precision: {precision} (asked: {config.precision})", flush=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=1e-4)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    return _Worker(world, device, model, precision, config.channels_last, optimizer, scaler)


def _train_epoch(worker: _Worker, loader: DataLoader, config: LoopConfig, clock: _Clock, epoch: int) -> TrainSums:
    if worker.world > 1 and hasattr(loader.sampler, "set_epoch"):
        loader.sampler.set_epoch(epoch)
    worker.model.train()
    steps_per_epoch = max(1, len(loader))
    started, seen, loss_sum = time.perf_counter(), 0, 0.0
    for step, (images, masks) in enumerate(loader):
        lr = cosine_lr(config.lr, clock.progress(epoch, step, steps_per_epoch, config.epochs))
        for group in worker.optimizer.param_groups:
            group["lr"] = lr
        loss_sum += _train_step(worker, images, masks) * len(images)
        seen += len(images)
    return TrainSums(loss_sum, seen, time.perf_counter() - started)


def _train_step(worker: _Worker, images: torch.Tensor, masks: torch.Tensor) -> float:
    """One optimizer step on one batch; returns the batch's mean loss."""
    images, masks = _to(images, masks, worker.device, worker.channels_last)
    worker.optimizer.zero_grad(set_to_none=True)
    with _autocast(worker.device, worker.precision):
        logits = worker.model(images)
    loss = dice_bce_loss(logits.float(), masks)
    worker.scaler.scale(loss).backward()
    worker.scaler.step(worker.optimizer)
    worker.scaler.update()
    return loss.item()


def _validate(worker: _Worker, val_loaders: dict[str, DataLoader], train: TrainSums, over_budget: bool) -> EpochSums:
    """Validation on this worker's shards, then this epoch's sums (and budget decision) over all workers."""
    val = {
        name: evaluate(worker.bare_model, loader, worker.device, worker.precision, worker.channels_last)
        for name, loader in val_loaders.items()
    }
    return EpochSums(train.loss_sum, train.seen, over_budget, val).all_reduced()


def _epoch_metrics(epoch: int, totals: EpochSums, train: TrainSums, clock: _Clock) -> dict[str, float]:
    """The epoch's metrics over all workers; per dataset too when the run has several."""
    val = ValSums.total(totals.val.values())
    metrics: dict[str, float] = {
        "epoch": epoch,
        "train_loss": totals.train_loss_sum / max(totals.train_seen, 1),
        "val_loss": val.loss,
        "val_dice": val.dice,
        "val_iou": val.iou,
        "train_images_per_s": totals.train_seen / train.seconds,
        "minutes": clock.elapsed() / 60,
    }
    if len(totals.val) > 1:
        for name, sums in totals.val.items():
            metrics[f"val_dice.{name}"] = sums.dice
    return metrics


class _Reporter:
    """Each epoch's report to Ray Train. Rank 0 also prints it, logs it to MLflow, keeps the history,
    saves the snapshots whose marks it has reached and reports a checkpoint."""

    def __init__(self, config: LoopConfig, rank: int) -> None:
        self.config = config
        self.leader = rank == 0
        self.logger = _epoch_logger(config.mlflow) if self.leader else None
        self.history: list[dict] = []
        self.snapshots = config.snapshots or {}
        self.pending_marks = sorted(self.snapshots.get("minutes", []))

    def report(self, epoch: int, metrics: dict[str, float], model: torch.nn.Module) -> None:
        import ray.train
        from ray.train import Checkpoint

        if not self.leader:
            ray.train.report(metrics)
            return
        print(
            f"epoch {epoch}/{self.config.epochs} " + " ".join(f"{k}={v:.4f}" for k, v in metrics.items() if k != "epoch"),
            flush=True,
        )
        if self.logger:
            self.logger(metrics, epoch)
        self.history.append(metrics)
        self._save_snapshots(model, metrics["minutes"])
        with tempfile.TemporaryDirectory() as folder:
            save_checkpoint(Path(folder), model, self.config.spec, self.history)
            ray.train.report(metrics, checkpoint=Checkpoint.from_directory(folder))

    def _save_snapshots(self, model: torch.nn.Module, minutes: float) -> None:
        while self.pending_marks and minutes >= self.pending_marks[0]:
            torch.save(model.state_dict(), Path(self.snapshots["dir"]) / f"after-{self.pending_marks.pop(0)}-min.pt")


def _epoch_logger(tracking: dict[str, str] | None) -> EpochLogger | None:
    """Per-epoch metrics to the MLflow run the driver opened, from rank 0 only."""
    if not tracking:
        return None
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking["tracking_uri"])

    def log(metrics: dict[str, float], epoch: int) -> None:
        timestamp = int(time.time() * 1000)
        from mlflow.entities import Metric

        client.log_batch(
            tracking["run_id"],
            metrics=[Metric(key, float(value), timestamp, epoch) for key, value in metrics.items() if key != "epoch"],
        )

    return log
