"""Fixtures for the training tests: a tiny synthetic dataset, a local Ray, a real S3 server (moto)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from polyp_dev.net import ServerDidNotStart, free_port, wait_for_port


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


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 server on loopback; sets the plain AWS variables every client reads."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        wait_for_port(port, proc, 60, "moto's S3 server")
    except ServerDidNotStart as exc:
        proc.kill()
        pytest.fail(str(exc))
    saved = {k: os.environ.get(k) for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                             "AWS_DEFAULT_REGION")}
    os.environ.update(AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test",
                      AWS_DEFAULT_REGION="us-east-1")
    yield endpoint
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def mlflow_home(tmp_path, monkeypatch):
    """A fresh local MLflow store (SQLite + artifacts) per test."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("POLYP_HOME", str(tmp_path / "polyp-home"))
    return tmp_path / "polyp-home"
