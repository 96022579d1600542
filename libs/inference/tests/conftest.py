"""Fixtures: a model repository exported the way training publishes it, and a real Triton serving it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from serving_helpers import MODEL, export_version

import polyp_fixtures


@pytest.fixture(scope="session")
def exported(tmp_path_factory) -> Path:
    """A pristine repository holding version 1 (copied by tests that add versions)."""
    repo = tmp_path_factory.mktemp("exported") / "repo"
    export_version(repo, 1, seed=1)
    return repo


@pytest.fixture
def model_repo(exported, tmp_path) -> Path:
    return Path(shutil.copytree(exported, tmp_path / "repo"))


@pytest.fixture(scope="session")
def triton(exported, tmp_path_factory):
    """A real tritonserver (nvidia-pytriton's build) polling a mirror of the repository every second."""
    from polyp_dev.local_triton import TritonServer, mirror_repository

    mirror = tmp_path_factory.mktemp("triton") / "repo"
    mirror_repository(exported, mirror)
    with TritonServer(mirror) as server:
        server.wait_for_version(MODEL, 1)
        server.mirror = mirror
        yield server


@pytest.fixture(scope="session")
def real_frames() -> list[tuple[str, bytes, tuple[int, int]]]:
    from PIL import Image

    images = sorted((polyp_fixtures.path("samples/kvasir-seg") / "images").glob("*.jpg"))
    return [(p.stem, p.read_bytes(), Image.open(p).size) for p in images]
