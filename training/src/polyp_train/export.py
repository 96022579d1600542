"""ONNX export, parity with PyTorch, and publishing into a Triton model repository.

The layout and tensor names are the contract in ``polyp_core.repository``. Publishing is atomic, because Triton polls the
repository: locally the version folder is built under a hidden name and renamed into place;
on S3 the version holds a single object, written with one PUT, after config.pbtxt.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from polyp_core import repository
from polyp_core.repository import CONFIG_FILE, INPUT_NAME, MODEL_FILE, OUTPUT_NAME

from . import storage
from .errors import ExportError
from .model import ModelSpec

if TYPE_CHECKING:
    import torch
    from mlflow.tracking import MlflowClient

PARITY_TOLERANCE = 1e-3  # max |logit difference| between ONNX Runtime and PyTorch
OPSET = 17


def export_onnx(model: torch.nn.Module, spec: ModelSpec) -> bytes:
    """The model as ONNX bytes with a dynamic batch axis, checked by onnx.checker."""
    import onnx
    import torch

    model = model.eval()
    buffer = io.BytesIO()
    dummy = torch.zeros(1, 3, spec.size, spec.size)
    torch.onnx.export(
        model,
        (dummy,),
        # The TorchScript exporter (dynamo=False) writes to file-like objects; the stub only admits paths.
        buffer,  # type: ignore[arg-type]
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
        opset_version=OPSET,
        dynamo=False,
    )
    data = buffer.getvalue()
    try:
        onnx.checker.check_model(onnx.load_from_string(data), full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"exported ONNX model fails onnx.checker: {exc}") from exc
    return data


@dataclass
class Parity:
    max_abs_diff: float
    inputs: int

    def __str__(self) -> str:
        return f"max |ONNX Runtime - PyTorch| = {self.max_abs_diff:.2e} over {self.inputs} inputs"


def check_parity(model: torch.nn.Module, onnx_bytes: bytes, inputs: np.ndarray, tolerance: float = PARITY_TOLERANCE) -> Parity:
    """Run the same real inputs (N x 3 x S x S) through both; fail above the tolerance."""
    import onnxruntime as ort
    import torch

    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    onnx_out = session.run([OUTPUT_NAME], {INPUT_NAME: inputs.astype(np.float32)})[0]
    with torch.no_grad():
        torch_out = model.eval()(torch.from_numpy(inputs.astype(np.float32))).numpy()
    parity = Parity(float(np.abs(onnx_out - torch_out).max()), len(inputs))
    if not parity.max_abs_diff <= tolerance:
        raise ExportError(f"ONNX parity failed: {parity} > tolerance {tolerance:.0e}")
    return parity


def triton_config(model_name: str, spec: ModelSpec, max_batch_size: int = 16) -> str:
    return repository.triton_config(model_name, spec.size, spec.architecture, max_batch_size)


def publish(repo: str, model_name: str, version: int, onnx_bytes: bytes, config: str) -> str:
    """Write config.pbtxt, the version's pinned configuration (configs/pin-N.pbtxt) and the version
    folder; the version appears whole or not at all, after its pin. Returns its URI."""
    if int(version) < 1:
        raise ExportError(f"Triton versions are positive integers, got {version}")
    target = f"{repo.rstrip('/')}/{model_name}/{int(version)}"
    if storage.exists(target):
        raise ExportError(f"{target} exists already: published versions are immutable")
    pin = repository.pinned_config(config, version)
    if storage.is_s3(repo):
        storage.put_bytes(f"{repo.rstrip('/')}/{model_name}/{CONFIG_FILE}", config.encode())
        storage.put_bytes(f"{repo.rstrip('/')}/{repository.pin_config_path(model_name, version)}", pin.encode())
        storage.put_bytes(f"{target}/{MODEL_FILE}", onnx_bytes)
        return target
    model_dir = Path(repo) / model_name
    (model_dir / repository.CONFIGS_DIR).mkdir(parents=True, exist_ok=True)
    # Triton reads only numeric version folders, so the hidden staging folder is never loaded.
    staging = model_dir / f".staging-{version}-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        (staging / MODEL_FILE).write_bytes(onnx_bytes)
        for text, final in (
            (pin, Path(repo) / repository.pin_config_path(model_name, version)),
            (config, model_dir / CONFIG_FILE),
        ):
            temporary = model_dir / f".config-{uuid.uuid4().hex[:8]}"
            temporary.write_text(text)
            os.replace(temporary, final)
        os.rename(staging, model_dir / str(int(version)))
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise ExportError(f"cannot publish into {model_dir}: {exc}") from exc
    return str(model_dir / str(int(version)))


def record_published(
    client: MlflowClient, model_name: str, version: str, published: str, onnx_bytes: bytes, precision: str
) -> None:
    """What serving and a pin need to know about a published version (onnx_sha256: charts/inference model.sha256)."""
    for key, value in (
        ("triton_repository", published),
        ("precision", precision),
        ("onnx_sha256", hashlib.sha256(onnx_bytes).hexdigest()),
    ):
        client.set_model_version_tag(model_name, version, key, value)
