"""Tiny ONNX models whose answer is known without training, for tests of what serves and scores them."""

from __future__ import annotations

from pathlib import Path

from polyp_core.repository import INPUT_NAME, OUTPUT_NAME


def constant_model(path: Path, logit: float, size: int = 64) -> Path:
    """image (N,3,S,S) -> logits (N,1,S,S) = 0 * image + logit, as a 1x1 convolution: a positive logit
    predicts polyp on every pixel, a negative one nowhere."""
    import onnx
    from onnx import TensorProto, helper

    weight = helper.make_tensor("w", TensorProto.FLOAT, [1, 3, 1, 1], [0.0, 0.0, 0.0])
    bias = helper.make_tensor("b", TensorProto.FLOAT, [1], [logit])
    graph = helper.make_graph(
        [helper.make_node("Conv", [INPUT_NAME, "w", "b"], [OUTPUT_NAME])],
        "constant",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", 3, size, size])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", 1, size, size])],
        initializer=[weight, bias],
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path
