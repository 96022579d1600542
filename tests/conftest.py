"""Shared fixtures for the repo-wide tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from polyp_gitops.render import render_environment
from polyp_gitops.repo import ENVIRONMENTS

REPO_ROOT = Path(__file__).resolve().parents[1]

TEST_REPO_URL = "https://github.com/example/polyp-fork.git"


@pytest.fixture(scope="session")
def repo_root():
    return REPO_ROOT


@pytest.fixture(scope="session")
def rendered():
    """Every environment rendered once, as Argo CD would, for a fork's URL and revision."""
    return {env: render_environment(env, REPO_ROOT, TEST_REPO_URL, "v1.2.3") for env in ENVIRONMENTS}
