"""The per-worker training loop Ray Train runs (one process per worker, DDP between them)."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Subset

from .dataset import SegmentationDataset
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


def evaluate(model: torch.nn.Module, loader: DataLoader, device) -> tuple[float, float, float, float]:
    """Sums over this worker's shard: (loss * n, Dice, IoU, n)."""
    model.eval()
    loss_sum = dice_sum = iou_sum = count = 0.0
    with torch.no_grad():
        for images, masks in loader:
            images, masks = images.to(device), masks.to(device)
            logits = model(images)
            dice, iou = per_image_scores(logits, masks)
            loss_sum += dice_bce_loss(logits, masks).item() * len(images)
            dice_sum += dice.sum().item()
            iou_sum += iou.sum().item()
            count += len(images)
    return loss_sum, dice_sum, iou_sum, count


def train_loop_per_worker(config: dict) -> None:
    import ray.train
    import ray.train.torch
    from ray.train import Checkpoint

    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    torch.set_num_threads(max(1, int(config["threads"])))
    torch.manual_seed(config["seed"] + rank)

    spec = ModelSpec(config["arch"], config["encoder"], config["size"])
    prepared = prepare(config["data"], Path(config["cache_dir"]), config["val_fraction"], config["skip_bad_pairs"])
    train_samples, val_samples = prepared.train, prepared.val
    train_set = SegmentationDataset(train_samples, spec.size, train=True, seed=config["seed"] + rank)
    # Validation is sharded by hand (no padding duplicates) and the sums are all-reduced: exact metrics.
    val_set = Subset(SegmentationDataset(val_samples, spec.size, train=False), range(rank, len(val_samples), world))
    train_loader = ray.train.torch.prepare_data_loader(
        DataLoader(train_set, batch_size=config["batch_size"], shuffle=True, drop_last=len(train_set) > config["batch_size"]))
    val_loader = DataLoader(val_set, batch_size=config["batch_size"])

    model = ray.train.torch.prepare_model(build_model(spec))
    device = ray.train.torch.get_device()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config["lr"], weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, config["epochs"]))
    logger = _epoch_logger(config) if rank == 0 else None
    history: list[dict] = []

    for epoch in range(1, config["epochs"] + 1):
        if world > 1 and hasattr(train_loader.sampler, "set_epoch"):
            train_loader.sampler.set_epoch(epoch)
        model.train()
        started, seen, loss_sum = time.perf_counter(), 0, 0.0
        for images, masks in train_loader:
            images, masks = images.to(device), masks.to(device)
            optimizer.zero_grad(set_to_none=True)
            loss = dice_bce_loss(model(images), masks)
            loss.backward()
            optimizer.step()
            loss_sum += loss.item() * len(images)
            seen += len(images)
        scheduler.step()
        elapsed = time.perf_counter() - started
        train_loss, train_seen, val_loss, val_dice, val_iou, val_count = _all_reduce(
            [loss_sum, seen, *evaluate(getattr(model, "module", model), val_loader, device)])
        metrics = {
            "epoch": epoch,
            "train_loss": train_loss / max(train_seen, 1),
            "val_loss": val_loss / max(val_count, 1),
            "val_dice": val_dice / max(val_count, 1),
            "val_iou": val_iou / max(val_count, 1),
            "train_images_per_s": train_seen / elapsed,
        }
        if rank == 0:
            print(f"epoch {epoch}/{config['epochs']} " + " ".join(f"{k}={v:.4f}" for k, v in metrics.items() if k != "epoch"),
                  flush=True)
            if logger:
                logger(metrics, epoch)
            history.append(metrics)
            with tempfile.TemporaryDirectory() as folder:
                save_checkpoint(Path(folder), getattr(model, "module", model), spec, history)
                ray.train.report(metrics, checkpoint=Checkpoint.from_directory(folder))
        else:
            ray.train.report(metrics)


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

        client.log_batch(tracking["run_id"], metrics=[
            Metric(key, float(value), timestamp, epoch) for key, value in metrics.items() if key != "epoch"])

    return log
