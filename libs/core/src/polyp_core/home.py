"""Where local state (MLflow SQLite, model repository, service database, datasets) lives by default."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_HOME = ".local"


def polyp_home() -> Path:
    """POLYP_HOME, else .local under the current directory, as an absolute path."""
    return Path(os.environ.get("POLYP_HOME") or DEFAULT_HOME).resolve()
