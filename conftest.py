"""Test tiers (pyproject markers): a test that uses a slow fixture must carry its tier, so `make test-fast` leaves it out."""

from __future__ import annotations

import pytest

TIER_OF_FIXTURE = {"triton": "triton", "ray_local": "ray"}


def pytest_collection_modifyitems(items):
    for item in items:
        for fixture, tier in TIER_OF_FIXTURE.items():
            if fixture in getattr(item, "fixturenames", ()) and item.get_closest_marker(tier) is None:
                raise pytest.UsageError(f"{item.nodeid} uses the {fixture} fixture: mark it @pytest.mark.{tier}")
