"""Where the repository is and what it holds."""

from __future__ import annotations

import os
from pathlib import Path

ENVIRONMENTS = ("dev", "staging", "prod")


def _find_root() -> Path:
    configured = os.environ.get("POLYP_REPO_ROOT")
    if configured:
        return Path(configured).resolve()
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "apps" / "Chart.yaml").is_file() and (parent / "environments").is_dir():
            return parent
    return Path.cwd()


REPO_ROOT = _find_root()


def check_environment(env: str) -> str:
    if env not in ENVIRONMENTS:
        raise ValueError(f"unknown environment {env!r}: expected one of {', '.join(ENVIRONMENTS)}")
    return env
