"""The per-worker training loop Ray Train runs (one process per worker, DDP between them)."""

from __future__ import annotations

import json
import math
import tempfile
import time
from pathlib import Path

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


def save_checkpoint(folder: Path, model: torch.nn.Module, spec: ModelSpec, history: list[dict]) -> None:
    torch.save(model.state_dict(), folder / CHECKPOINT_FILE)
    (folder / SPEC_FILE).write_text(json.dumps(spec.as_dict()))
    (folder / HISTORY_FILE).write_text(json.dumps(history))


def load_history(folder: Path) -> list[dict]:
    return json.loads((Path(folder) / HISTORY_FILE).read_text())


def load_checkpoint(folder: Path) -> tuple[torch.nn.Module, ModelSpec]:
    spec = ModelSpec(**json.loads((Path(folder) / SPEC_FILE).read_text()))
    model = build_model(spec)
    model.load_state_dict(torch.load(Path(folder) / CHECKPOINT_FILE, map_location="cpu", weights_only=True))
    return model.eval(), spec


def _all_reduce(values: list[float]) -> list[float]:
    tensor = torch.tensor(values, dtype=torch.float64)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(tensor)
    return tensor.tolist()


def _autocast(device, precision: str):
    """bfloat16 (CPUs with AVX-512 BF16/AMX, recent GPUs) or float16 (GPUs) autocast; fp32 is off."""
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


def _to(images, masks, device, channels_last: bool):
    images = images.to(device)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    return images, masks.to(device)


def evaluate(
    model: torch.nn.Module, loader: DataLoader, device, precision: str = "fp32", channels_last: bool = False
) -> tuple[float, float, float, float]:
    """Sums over this worker's shard: (loss * n, Dice, IoU, n)."""
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
    return loss_sum, dice_sum, iou_sum, count


def cosine_lr(base: float, progress: float, warmup: float = 0.03) -> float:
    """Learning rate at a fraction of the run: a short linear warm-up, then cosine to zero."""
    if progress < warmup:
        return base * max(progress / warmup, 0.05)
    return base * 0.5 * (1 + math.cos(math.pi * min(1.0, (progress - warmup) / (1 - warmup))))


def train_loop_per_worker(config: dict) -> None:
    import ray.train
    import ray.train.torch
    from ray.train import Checkpoint

    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    torch.set_num_threads(max(1, int(config["threads"])))
    torch.manual_seed(config["seed"] + rank)
    channels_last = config.get("channels_last", False)
    budget_s = config.get("time_budget_s")  # the run stops after the epoch that reaches it

    spec = ModelSpec(config["arch"], config["encoder"], config["size"])
    prepared = prepare(config["data"], Path(config["cache_dir"]), config["val_fraction"], config["skip_bad_pairs"])
    train_set = SegmentationDataset(prepared.train, spec.size, train=True, seed=config["seed"] + rank)
    # Validation is sharded by hand (no padding duplicates) and the sums are all-reduced: exact metrics,
    # per dataset (a run on Kvasir-SEG + CVC-ClinicDB reports both).
    val_loaders = {}
    for part in prepared.splits:
        shard = Subset(SegmentationDataset(part.val, spec.size, train=False), range(rank, len(part.val), world))
        val_loaders[part.name] = DataLoader(shard, batch_size=config["batch_size"])
    train_loader = ray.train.torch.prepare_data_loader(
        DataLoader(train_set, batch_size=config["batch_size"], shuffle=True, drop_last=len(train_set) > config["batch_size"])
    )

    model = build_model(spec)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    model = ray.train.torch.prepare_model(model)
    device = ray.train.torch.get_device()
    precision = autocast_precision(config.get("precision", "fp32"), device.type)
    if rank == 0:
        print(f"autocast precision: {precision} (asked: {config.get('precision', 'fp32')})", flush=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config["lr"], weight_decay=1e-4)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    logger = _epoch_logger(config) if rank == 0 else None
    history: list[dict] = []
    snapshots = config.get("snapshots") or {}
    pending_marks = sorted(snapshots.get("minutes", []))
    run_started = time.perf_counter()
    steps_per_epoch = max(1, len(train_loader))

    for epoch in range(1, config["epochs"] + 1):
        if world > 1 and hasattr(train_loader.sampler, "set_epoch"):
            train_loader.sampler.set_epoch(epoch)
        model.train()
        started, seen, loss_sum = time.perf_counter(), 0, 0.0
        for step, (images, masks) in enumerate(train_loader):
            # Schedule by wall time under a budget (its end is known, not its epoch count), else by epoch.
            progress = (
                (time.perf_counter() - run_started) / budget_s
                if budget_s
                else (epoch - 1 + step / steps_per_epoch) / config["epochs"]
            )
            for group in optimizer.param_groups:
                group["lr"] = cosine_lr(config["lr"], progress)
            images, masks = _to(images, masks, device, channels_last)
            optimizer.zero_grad(set_to_none=True)
            with _autocast(device, precision):
                logits = model(images)
            loss = dice_bce_loss(logits.float(), masks)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            loss_sum += loss.item() * len(images)
            seen += len(images)
        elapsed = time.perf_counter() - started
        # Every worker must stop after the same epoch: the budget decision is all-reduced with the sums.
        over_budget = float(bool(budget_s) and time.perf_counter() - run_started >= budget_s)
        sums = [loss_sum, seen, over_budget]
        for loader in val_loaders.values():
            sums += evaluate(getattr(model, "module", model), loader, device, precision, channels_last)
        totals = _all_reduce(sums)
        train_loss, train_seen, over_budget, per_set = totals[0], totals[1], totals[2], totals[3:]
        val_loss, val_dice, val_iou, val_count = (sum(per_set[i::4]) for i in range(4))
        metrics = {
            "epoch": epoch,
            "train_loss": train_loss / max(train_seen, 1),
            "val_loss": val_loss / max(val_count, 1),
            "val_dice": val_dice / max(val_count, 1),
            "val_iou": val_iou / max(val_count, 1),
            "train_images_per_s": train_seen / elapsed,
            "minutes": (time.perf_counter() - run_started) / 60,
        }
        if len(val_loaders) > 1:
            for index, name in enumerate(val_loaders):
                metrics[f"val_dice.{name}"] = per_set[4 * index + 1] / max(per_set[4 * index + 3], 1)
        finished = epoch == config["epochs"] or over_budget > 0
        if rank == 0:
            print(
                f"epoch {epoch}/{config['epochs']} " + " ".join(f"{k}={v:.4f}" for k, v in metrics.items() if k != "epoch"),
                flush=True,
            )
            if logger:
                logger(metrics, epoch)
            history.append(metrics)
            while pending_marks and metrics["minutes"] >= pending_marks[0]:
                torch.save(
                    getattr(model, "module", model).state_dict(), Path(snapshots["dir"]) / f"after-{pending_marks.pop(0)}-min.pt"
                )
            with tempfile.TemporaryDirectory() as folder:
                save_checkpoint(Path(folder), getattr(model, "module", model), spec, history)
                ray.train.report(metrics, checkpoint=Checkpoint.from_directory(folder))
        else:
            ray.train.report(metrics)
        if finished:
            break


def _epoch_logger(config: dict):
    """Per-epoch metrics to the MLflow run the driver opened, from rank 0 only."""
    tracking = config.get("mlflow")
    if not tracking:
        return None
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking["tracking_uri"])

    def log(metrics: dict, epoch: int) -> None:
        timestamp = int(time.time() * 1000)
        from mlflow.entities import Metric

        client.log_batch(
            tracking["run_id"],
            metrics=[Metric(key, float(value), timestamp, epoch) for key, value in metrics.items() if key != "epoch"],
        )

    return log
