"""ONNX export, parity, Triton config and atomic publishing (local folder and real S3)."""

from __future__ import annotations

import os
import re

import numpy as np
import pytest

from polyp_train import storage
from polyp_train.errors import ExportError
from polyp_train.export import check_parity, export_onnx, publish, triton_config
from polyp_train.model import ModelSpec, build_model

SPEC = ModelSpec("Unet", "resnet18", 64)


@pytest.fixture(scope="module")
def model_and_onnx():
    import torch

    torch.manual_seed(0)
    model = build_model(SPEC).eval()
    return model, export_onnx(model, SPEC)


def test_onnx_has_dynamic_batch_and_matches_pytorch(model_and_onnx):
    import onnx
    import onnxruntime as ort

    model, onnx_bytes = model_and_onnx
    graph = onnx.load_from_string(onnx_bytes).graph
    dims = [d.dim_param or d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
    assert graph.input[0].name == "image" and graph.output[0].name == "logits" and dims == ["batch", 3, 64, 64]
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    assert session.run(None, {"image": np.zeros((5, 3, 64, 64), np.float32)})[0].shape == (5, 1, 64, 64)
    inputs = np.random.default_rng(1).normal(size=(3, 3, 64, 64)).astype(np.float32)
    parity = check_parity(model, onnx_bytes, inputs)
    assert parity.max_abs_diff < 1e-4 and parity.inputs == 3


def test_parity_failure_is_an_export_error(model_and_onnx):
    import torch

    model, onnx_bytes = model_and_onnx
    drifted = build_model(SPEC).eval()
    drifted.load_state_dict(model.state_dict())
    with torch.no_grad():
        drifted.segmentation_head[0].bias.add_(0.5)  # the PyTorch side no longer matches the export
    with pytest.raises(ExportError, match="ONNX parity failed"):
        check_parity(drifted, onnx_bytes, np.zeros((1, 3, 64, 64), np.float32))


def test_triton_config_matches_the_export():
    config = triton_config("polyp-segmenter", SPEC, max_batch_size=8)
    assert 'name: "polyp-segmenter"' in config and 'backend: "onnxruntime"' in config
    assert "max_batch_size: 8" in config and "dynamic_batching" in config
    assert re.search(r'name: "image"\s+data_type: TYPE_FP32\s+dims: \[ 3, 64, 64 \]', config)
    assert re.search(r'name: "logits"\s+data_type: TYPE_FP32\s+dims: \[ 1, 64, 64 \]', config)


def test_local_publish_is_atomic_and_versions_are_immutable(tmp_path, model_and_onnx, monkeypatch):
    _, onnx_bytes = model_and_onnx
    config = triton_config("polyp-segmenter", SPEC)
    target = publish(str(tmp_path), "polyp-segmenter", 3, onnx_bytes, config)
    model_dir = tmp_path / "polyp-segmenter"
    assert target == str(model_dir / "3") and (model_dir / "3" / "model.onnx").read_bytes() == onnx_bytes
    assert (model_dir / "config.pbtxt").read_text() == config
    assert sorted(p.name for p in model_dir.iterdir()) == ["3", "config.pbtxt", "configs"]  # no staging left behind
    pin = (model_dir / "configs" / "pin-3.pbtxt").read_text()
    assert "version_policy: { specific: { versions: [ 3 ] } }" in pin and "latest" not in pin
    assert pin.replace("specific: { versions: [ 3 ] }", "latest: { num_versions: 1 }") == config
    with pytest.raises(ExportError, match="immutable"):
        publish(str(tmp_path), "polyp-segmenter", 3, onnx_bytes, config)

    def interrupted(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "rename", interrupted)
    with pytest.raises(ExportError, match="disk full"):
        publish(str(tmp_path), "polyp-segmenter", 4, onnx_bytes, config)
    assert sorted(p.name for p in model_dir.iterdir()) == ["3", "config.pbtxt", "configs"]  # version 4 never appeared


def test_s3_publish_writes_one_object_per_version(s3_server, model_and_onnx):
    _, onnx_bytes = model_and_onnx
    storage.s3_client().create_bucket(Bucket="export-test")  # the S3 server is shared by the session
    config = triton_config("polyp-segmenter", SPEC)
    target = publish("s3://export-test/triton", "polyp-segmenter", 1, onnx_bytes, config)
    assert target == "s3://export-test/triton/polyp-segmenter/1"
    assert sorted(storage.list_objects("s3://export-test/triton")) == [
        "polyp-segmenter/1/model.onnx",
        "polyp-segmenter/config.pbtxt",
        "polyp-segmenter/configs/pin-1.pbtxt",
    ]
    body = storage.s3_client().get_object(Bucket="export-test", Key="triton/polyp-segmenter/1/model.onnx")["Body"].read()
    assert body == onnx_bytes
    with pytest.raises(ExportError, match="immutable"):
        publish("s3://export-test/triton", "polyp-segmenter", 1, onnx_bytes, config)
