"""Training throughput: the Ray Train loop vs a plain PyTorch loop, same model, data and batch size.

    uv run python bench/train_throughput.py [--n 96] [--size 128] [--epochs 3] [--encoder resnet18]

Prints images/s per epoch (the first epoch is warm-up and left out of the mean) for:
  plain   one process, torch using every core;
  ray x1  TorchTrainer, 1 worker holding every core;
  ray x2  TorchTrainer, 2 workers (DDP over gloo), the cores split between them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from polyp_train.dataset import SegmentationDataset
from polyp_train.metrics import dice_bce_loss
from polyp_train.model import ModelSpec, build_model
from polyp_train.prepare import prepare
from polyp_train.synthetic import make_dataset
from polyp_train.trainer import TrainConfig, ensure_ray, make_trainer, outcome_of


def plain_loop(data: Path, spec: ModelSpec, epochs: int, batch_size: int, threads: int) -> list[float]:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    train = prepare([str(data)], data.parent / "cache", 0.2).train
    loader = DataLoader(SegmentationDataset(train, spec.size, train=True), batch_size=batch_size, shuffle=True, drop_last=True)
    model = build_model(spec)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    rates = []
    for _ in range(epochs):
        model.train()
        started, seen = time.perf_counter(), 0
        for images, masks in loader:
            optimizer.zero_grad(set_to_none=True)
            dice_bce_loss(model(images), masks).backward()
            optimizer.step()
            seen += len(images)
        rates.append(seen / (time.perf_counter() - started))
    return rates


def ray_loop(data: Path, spec: ModelSpec, epochs: int, batch_size: int, workers: int, cores: int, tmp: Path) -> list[float]:
    config = TrainConfig(
        data=str(data),
        epochs=epochs,
        workers=workers,
        spec=spec,
        batch_size=batch_size,
        cpus_per_worker=max(1, cores // workers),
        storage_path=str(tmp / f"ray-{workers}"),
        cache_dir=str(tmp / "cache"),
        name=f"bench-{workers}",
    )
    return [epoch["train_images_per_s"] for epoch in outcome_of(make_trainer(config).fit()).history]


def summary(label: str, rates: list[float], wall: float) -> float:
    steady = statistics.mean(rates[1:]) if len(rates) > 1 else rates[0]
    print(
        f"{label:8s} images/s per epoch: {' '.join(f'{r:6.1f}' for r in rates)}  steady mean {steady:6.1f}  wall {wall:6.1f} s",
        flush=True,
    )
    return steady


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=96)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--encoder", default="resnet18")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    spec = ModelSpec("Unet", args.encoder, args.size)
    print(f"machine: {cores} CPUs, torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}")
    print(
        f"model: {spec.arch}/{spec.encoder} at {spec.size}px, batch {args.batch_size}, "
        f"{args.n} synthetic images (80% train), {args.epochs} epochs"
    )
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = make_dataset(tmp / "data", args.n, args.size, seed=1)
        started = time.perf_counter()
        plain = summary("plain", plain_loop(data, spec, args.epochs, args.batch_size, cores), time.perf_counter() - started)
        ensure_ray(num_cpus=cores)
        results = {}
        for workers in (1, 2):
            started = time.perf_counter()
            rates = ray_loop(data, spec, args.epochs, args.batch_size, workers, cores, tmp)
            results[workers] = summary(f"ray x{workers}", rates, time.perf_counter() - started)
    for workers, rate in results.items():
        print(f"ratio ray x{workers} / plain: {rate / plain:.2f}")


if __name__ == "__main__":
    main()
