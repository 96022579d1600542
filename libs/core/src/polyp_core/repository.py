"""The Triton model repository: what training writes and every server reads.

Layout: ``<repo>/<model>/config.pbtxt`` and ``<repo>/<model>/<version>/model.onnx``, version = the
MLflow model version (a positive integer). The model takes ``image`` (N x 3 x S x S float32,
see ``preprocess``) and answers ``logits`` (N x 1 x S x S float32).

Training publishes a version by renaming a complete folder into place, so a numeric folder that
exists is whole; hidden staging folders are never looked at, as Triton does not either.

Pins: ``config.pbtxt`` serves the newest version (``version_policy: latest 1``); beside it each
version N also gets ``configs/pin-N.pbtxt``, the same configuration with ``version_policy: specific
[N]``. Triton started with ``--model-config-name=pin-N`` serves exactly N, whatever is published later
(charts/inference does this from the environment's pinned ``model.version``).
"""

from __future__ import annotations

from pathlib import Path

DEFAULT_MODEL_NAME = "polyp-segmenter"
MODEL_FILE = "model.onnx"
CONFIG_FILE = "config.pbtxt"
CONFIGS_DIR = "configs"  # Triton's custom configurations (--model-config-name)
LATEST_POLICY = "version_policy: { latest: { num_versions: 1 } }"
INPUT_NAME = "image"
OUTPUT_NAME = "logits"


def published_versions(repo: Path, model: str) -> list[int]:
    folder = Path(repo) / model
    if not folder.is_dir():
        return []
    return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit() and (p / MODEL_FILE).is_file())


def newest_version(repo: Path, model: str) -> int | None:
    versions = published_versions(repo, model)
    return versions[-1] if versions else None


def model_file(repo: Path, model: str, version: int) -> Path:
    return Path(repo) / model / str(version) / MODEL_FILE


def pin_config_name(version: int) -> str:
    """The --model-config-name that makes Triton serve exactly this version."""
    return f"pin-{int(version)}"


def pin_config_path(model: str, version: int) -> str:
    """Where a version's pinned configuration lives, relative to the repository."""
    return f"{model}/{CONFIGS_DIR}/{pin_config_name(version)}.pbtxt"


def pinned_config(config: str, version: int) -> str:
    """The same configuration, serving only `version`."""
    if LATEST_POLICY not in config:
        raise ValueError("the configuration has no 'latest' version policy to pin")
    return config.replace(LATEST_POLICY, f"version_policy: {{ specific: {{ versions: [ {int(version)} ] }} }}")


def triton_config(model_name: str, size: int, architecture: str, max_batch_size: int = 16) -> str:
    """config.pbtxt for Triton's onnxruntime backend; dims exclude the batch axis (max_batch_size > 0)."""
    return f"""name: "{model_name}"
backend: "onnxruntime"
max_batch_size: {max_batch_size}
input [
  {{
    name: "{INPUT_NAME}"
    data_type: TYPE_FP32
    dims: [ 3, {size}, {size} ]
  }}
]
output [
  {{
    name: "{OUTPUT_NAME}"
    data_type: TYPE_FP32
    dims: [ 1, {size}, {size} ]
  }}
]
dynamic_batching {{
  max_queue_delay_microseconds: 2000
}}
{LATEST_POLICY}
parameters {{
  key: "preprocess"
  value: {{ string_value: "letterbox:{size}:imagenet" }}
}}
parameters {{
  key: "architecture"
  value: {{ string_value: "{architecture}" }}
}}
"""
