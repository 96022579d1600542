"""Triton Python-backend model running the version's model.onnx with ONNX Runtime (see the package doc)."""

import json
import os

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        folder = os.path.join(args["model_repository"], args["model_version"])
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(os.environ.get("POLYP_TRITON_ORT_THREADS", "0"))
        self.session = ort.InferenceSession(os.path.join(folder, "model.onnx"), options, providers=["CPUExecutionProvider"])
        self.input_name = config["input"][0]["name"]
        self.output_name = config["output"][0]["name"]

    def execute(self, requests):
        # Tensors cross as DLPack: the stub was built against numpy 1 and mis-reads numpy 2 arrays.
        batches = [np.from_dlpack(pb_utils.get_input_tensor_by_name(r, self.input_name)) for r in requests]
        outputs = self.session.run([self.output_name], {self.input_name: np.concatenate(batches)})[0]
        responses, start = [], 0
        for batch in batches:
            part = outputs[start : start + len(batch)]
            start += len(batch)
            tensor = pb_utils.Tensor.from_dlpack(self.output_name, np.ascontiguousarray(part))
            responses.append(pb_utils.InferenceResponse([tensor]))
        return responses
