"""Helpers shared by the serving tests (a module of its own: conftest modules are not importable by name)."""

from __future__ import annotations

from pathlib import Path

MODEL = "polyp-segmenter"
SIZE = 96


def export_version(repo: Path, version: int, seed: int, size: int = SIZE, model: str = MODEL) -> Path:
    """An untrained but deterministic model, exported and published exactly as polyp-train does."""
    import torch

    from polyp_train.export import export_onnx, publish, triton_config
    from polyp_train.model import ModelSpec, build_model

    torch.manual_seed(seed)
    spec = ModelSpec("Unet", "resnet18", size)
    network = build_model(spec).eval()
    return Path(publish(str(repo), model, version, export_onnx(network, spec), triton_config(model, spec)))


async def raw_answers(backends, batch):
    """(logits, version) of each backend for the same prepared batch, closing each after."""
    answers = []
    for backend in backends:
        answers.append(await backend.infer(batch, await backend.model_info()))
        await backend.close()
    return answers
