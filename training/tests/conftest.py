"""Fixtures for the training tests: a tiny synthetic dataset, a local Ray (the S3 server is repo-wide)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory) -> Path:
    from polyp_train.synthetic import make_dataset

    return make_dataset(tmp_path_factory.mktemp("synthetic"), n=12, size=96, seed=3)


@pytest.fixture(scope="module")
def ray_local(s3_server):
    """One local Ray per test module (starting one costs ~10 s); its workers inherit the S3 settings.

    Not per session: an idle Ray left running would compete with the Ray heads later tests start.

    Three logical CPUs on this 2-core machine: two training workers plus a Tune trial driver that only waits.
    """
    import ray

    from polyp_train.trainer import ensure_ray

    ensure_ray(num_cpus=3)
    yield
    ray.shutdown()


@pytest.fixture
def mlflow_home(tmp_path, monkeypatch):
    """A fresh local MLflow store (SQLite + artifacts) per test."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("POLYP_HOME", str(tmp_path / "polyp-home"))
    return tmp_path / "polyp-home"
