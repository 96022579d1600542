"""Repo-wide pytest settings: Ray without uv wrapping; test tiers (pyproject markers) enforced."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import polyp_fixtures

# make test runs pytest under `uv run`; Ray would then wrap every worker of a local Ray (and of
# polyp-train subprocesses) in `uv run` over an uploaded copy of the checkout. The venv is already here.
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")

TIER_OF_FIXTURE = {"triton": "triton", "ray_local": "ray"}


@pytest.fixture(scope="session")
def kvasir_samples() -> Path:
    """The five real Kvasir-SEG frames and masks (a fixture group: ../shared or the checked download)."""
    return polyp_fixtures.path("samples/kvasir-seg")


def pytest_collection_modifyitems(items):
    for item in items:
        for fixture, tier in TIER_OF_FIXTURE.items():
            if fixture in getattr(item, "fixturenames", ()) and item.get_closest_marker(tier) is None:
                raise pytest.UsageError(f"{item.nodeid} uses the {fixture} fixture: mark it @pytest.mark.{tier}")
