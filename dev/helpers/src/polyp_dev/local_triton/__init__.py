"""A real Triton server on this machine, for tests, benchmarks and laptops without a GPU node.

The ``tritonserver`` binary comes from the PyPI package nvidia-pytriton, which ships only Triton's
Python backend. So the model repository is mirrored with each model's ``backend: "onnxruntime"``
swapped for ``backend: "python"`` and a small ``model.py`` that runs the same ``model.onnx``
with ONNX Runtime, batching the requests Triton's dynamic batcher hands it. Everything else is
Triton's own: the HTTP/KServe v2 protocol, the dynamic batcher, the version policy and the
repository polling that picks up newly published versions.
"""

from .server import TritonServer, mirror_repository

__all__ = ["TritonServer", "mirror_repository"]
