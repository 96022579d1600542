"""INT8 quantization judged on real frames (the 30-pair Kvasir-SEG subset): kept when Dice holds,
refused when it does not."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

import polyp_fixtures
from polyp_core.repository import INPUT_NAME, OUTPUT_NAME
from polyp_train.prepare import prepare
from polyp_train.quantize import QuantizedCandidate, calibration_inputs, quantize_int8, quantized_candidate

SIZE = 64


def red_channel_model(scale: float, offset: float) -> bytes:
    """logits = scale * R + offset: a real (if crude) polyp detector, as reddish mucosa is brighter in R."""
    weight = helper.make_tensor("w", TensorProto.FLOAT, [1, 3, 1, 1], [scale, 0.0, 0.0])
    bias = helper.make_tensor("b", TensorProto.FLOAT, [1], [offset])
    graph = helper.make_graph(
        [helper.make_node("Conv", [INPUT_NAME, "w", "b"], [OUTPUT_NAME])],
        "red",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", 3, SIZE, SIZE])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", 1, SIZE, SIZE])],
        initializer=[weight, bias],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


@pytest.fixture(scope="module")
def kvasir(tmp_path_factory):
    """Training and validation frames of the real subset, named kvasir."""
    folder = polyp_fixtures.linked("data/kvasir-seg", tmp_path_factory.mktemp("real") / "kvasir-seg")
    prepared = prepare([f"kvasir={folder}"], tmp_path_factory.mktemp("cache"), 0.3)
    return prepared.train, prepared.val


def test_the_int8_model_holds_quantized_weights_and_answers_like_fp32(kvasir):
    train, _ = kvasir
    fp32 = red_channel_model(4.0, -2.0)
    int8 = quantize_int8(fp32, calibration_inputs(train, SIZE))
    graph_ops = {node.op_type for node in onnx.load_from_string(int8).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= graph_ops, "QDQ format"
    frame = calibration_inputs(train[:1], SIZE)[0]
    outputs = [
        ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {INPUT_NAME: frame})[0]
        for model in (fp32, int8)
    ]
    assert np.abs(outputs[0] - outputs[1]).max() < 0.05 * np.abs(outputs[0]).max()


def test_calibrated_on_training_frames_int8_keeps_the_dice_on_real_validation_frames(kvasir):
    train, val = kvasir
    candidate = quantized_candidate(red_channel_model(4.0, -2.0), SIZE, train, val)
    assert set(candidate.dice_fp32) == {"kvasir"} and candidate.dice_fp32["kvasir"] > 0
    assert candidate.accepted, candidate.verdict()
    assert "within 0.01 of fp32" in candidate.verdict()


def test_calibrated_on_the_wrong_frames_int8_loses_dice_and_is_refused(kvasir, monkeypatch):
    """Black calibration frames: the activation range misses real frames, the mask saturates."""
    from polyp_train import quantize

    train, val = kvasir
    black = [np.full((1, 3, SIZE, SIZE), -2.0, np.float32)]
    monkeypatch.setattr(quantize, "calibration_inputs", lambda samples, size: black)
    candidate = quantized_candidate(red_channel_model(4.0, -2.0), SIZE, train, val)
    assert not candidate.accepted and "not within 0.01" in candidate.verdict()


def test_every_dataset_must_hold_its_dice():
    held = QuantizedCandidate(b"", {"kvasir": 0.80, "clinicdb": 0.70}, {"kvasir": 0.795, "clinicdb": 0.691})
    lost = QuantizedCandidate(b"", {"kvasir": 0.80, "clinicdb": 0.70}, {"kvasir": 0.81, "clinicdb": 0.685})
    assert held.accepted and not lost.accepted
