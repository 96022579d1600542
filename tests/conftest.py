"""Shared fixtures for the repo-wide tests."""

from __future__ import annotations

import subprocess
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


def install_dry_run(root: Path, *args: str, env: str = "dev", check: bool = False) -> subprocess.CompletedProcess:
    """`bootstrap/install.sh --dry-run --target kind --env ENV ARGS` of the checkout at `root`."""
    command = ["bash", str(root / "bootstrap" / "install.sh"), "--dry-run", "--target", "kind", "--env", env, *args]
    return subprocess.run(command, capture_output=True, text=True, check=check)
