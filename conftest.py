"""Repo-wide pytest settings: Ray without uv wrapping; test tiers (pyproject markers) enforced."""

from __future__ import annotations

import os

import pytest

# make test runs pytest under `uv run`; Ray would then wrap every worker of a local Ray (and of
# polyp-train subprocesses) in `uv run` over an uploaded copy of the checkout. The venv is already here.
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")

TIER_OF_FIXTURE = {"triton": "triton", "ray_local": "ray"}


def pytest_collection_modifyitems(items):
    for item in items:
        for fixture, tier in TIER_OF_FIXTURE.items():
            if fixture in getattr(item, "fixturenames", ()) and item.get_closest_marker(tier) is None:
                raise pytest.UsageError(f"{item.nodeid} uses the {fixture} fixture: mark it @pytest.mark.{tier}")
