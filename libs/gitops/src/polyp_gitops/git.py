"""The few git operations a bump or promotion needs."""

from __future__ import annotations

import subprocess
from pathlib import Path

from .errors import GitError  # raised here, and importable from here


def _git(root: Path, *args: str) -> str:
    result = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise GitError(f"git {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def require_clean(root: Path) -> None:
    dirty = _git(root, "status", "--porcelain").strip()
    if dirty:
        raise GitError(f"the working tree has uncommitted changes; commit or stash them first:\n{dirty}")


def commit(root: Path, path: Path, message: str) -> str:
    _git(root, "add", "--", str(path))
    _git(root, "commit", "--quiet", "-m", message, "--", str(path))
    return _git(root, "rev-parse", "HEAD").strip()
