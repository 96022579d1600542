"""A local Triton model repository: ``<model>/config.pbtxt`` and numeric ``<model>/<version>/model.onnx``.

Training publishes a version by renaming a complete folder into place, so a numeric folder that
exists is whole; hidden staging folders are never looked at, as Triton does not either.
"""

from __future__ import annotations

from pathlib import Path

MODEL_FILE = "model.onnx"


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
