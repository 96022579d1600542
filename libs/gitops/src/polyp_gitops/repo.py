"""Which repository a command acts on, and where the tool itself is installed.

Like git, every command acts on the repository that contains the current directory, unless told
otherwise (``--repo-dir DIR`` or ``POLYP_REPO_ROOT``). The checkout the package was installed from
matters only for the tool's own files (pinned binaries in ``.tools/``, schema caches in ``build/``).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import yaml

from .errors import NotARepository  # raised here, and importable from here

PROMOTION_FILE = Path("environments") / "promotion.yaml"  # the environments, in promotion order: their one list


def _is_platform_repo(path: Path) -> bool:
    return (path / "apps" / "Chart.yaml").is_file() and (path / "environments").is_dir()


def repo_root(directory: str | Path | None = None) -> Path:
    """The platform repository to act on: the git repository containing `directory`, else
    POLYP_REPO_ROOT, else the current directory's. NotARepository when there is none."""
    configured = os.environ.get("POLYP_REPO_ROOT")
    if directory is None and configured:
        root = Path(configured).resolve()
    else:
        start = Path(directory or Path.cwd()).resolve()
        result = subprocess.run(["git", "-C", str(start), "rev-parse", "--show-toplevel"], capture_output=True, text=True)
        if result.returncode != 0:
            raise NotARepository(
                f"{start} is not inside a git repository: run polyp-gitops in a clone of the "
                "platform repository, or name one with --repo-dir DIR"
            )
        root = Path(result.stdout.strip())
    if not _is_platform_repo(root):
        raise NotARepository(f"{root} is not the platform repository (it has no apps/Chart.yaml and environments/)")
    return root


def _install_root() -> Path:
    """The checkout this package was installed from (editable installs), else the current directory."""
    for parent in Path(__file__).resolve().parents:
        if _is_platform_repo(parent):
            return parent
    return Path.cwd()


INSTALL_ROOT = _install_root()


def environments(root: Path) -> tuple[str, ...]:
    """The environments of a checkout, in promotion order (environments/promotion.yaml); () without the file."""
    path = root / PROMOTION_FILE
    if not path.is_file():
        return ()
    listed = (yaml.safe_load(path.read_text()) or {}).get("environments")
    if not isinstance(listed, list) or not all(isinstance(env, str) for env in listed):
        raise ValueError(f"{path}: `environments` must be a list of names, in promotion order")
    return tuple(listed)


ENVIRONMENTS = environments(INSTALL_ROOT)

LIBRARY_CHARTS = ("polyp-lib",)


def own_charts(root: Path) -> tuple[str, ...]:
    """The platform's own deployable charts (charts/*), library charts left out."""
    return tuple(sorted(p.parent.name for p in (root / "charts").glob("*/Chart.yaml") if p.parent.name not in LIBRARY_CHARTS))


def check_environment(env: str) -> str:
    if env not in ENVIRONMENTS:
        raise ValueError(f"unknown environment {env!r}: expected one of {', '.join(ENVIRONMENTS)} ({PROMOTION_FILE})")
    return env
