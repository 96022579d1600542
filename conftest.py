"""Repo-wide pytest settings: Ray without uv wrapping; test tiers (pyproject markers) enforced."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

import polyp_fixtures
from polyp_dev.net import ServerDidNotStart, free_port, wait_for_port

# make test runs pytest under `uv run`; Ray would then wrap every worker of a local Ray (and of
# polyp-train subprocesses) in `uv run` over an uploaded copy of the checkout. The venv is already here.
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
# polyp-gitops reads the upstream charts and CRD schemas from where it is told: here, the pinned fixtures.
# Missing fixtures are left for the tests that need them to report (polyp-gitops names the variable).
with contextlib.suppress(polyp_fixtures.FixtureMissing):
    os.environ.update(polyp_fixtures.gitops_environment())

TIER_OF_FIXTURE = {"triton": "triton", "ray_local": "ray"}


@pytest.fixture(scope="session")
def kvasir_samples() -> Path:
    """The five real Kvasir-SEG frames and masks (a fixture group: ../shared or the checked download)."""
    return polyp_fixtures.path("samples/kvasir-seg")


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 server on loopback; sets the plain AWS variables every client reads."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        wait_for_port(port, proc, 60, "moto's S3 server")
    except ServerDidNotStart as exc:
        proc.kill()
        pytest.fail(str(exc))
    saved = {
        k: os.environ.get(k) for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")
    }
    os.environ.update(
        AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test", AWS_DEFAULT_REGION="us-east-1"
    )
    yield endpoint
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    proc.terminate()
    proc.wait(timeout=10)


def pytest_collection_modifyitems(items):
    for item in items:
        for fixture, tier in TIER_OF_FIXTURE.items():
            if fixture in getattr(item, "fixturenames", ()) and item.get_closest_marker(tier) is None:
                raise pytest.UsageError(f"{item.nodeid} uses the {fixture} fixture: mark it @pytest.mark.{tier}")
