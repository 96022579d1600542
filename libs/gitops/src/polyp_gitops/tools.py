"""The external binaries the GitOps checks drive: helm and kubeconform."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from .errors import ToolError  # raised here, and importable from here
from .repo import INSTALL_ROOT

TOOLS_BIN = INSTALL_ROOT / ".tools" / "bin"


def find_tool(name: str) -> str:
    """Prefer the pinned copy from `make tools`, then PATH."""
    pinned = TOOLS_BIN / name
    if pinned.is_file():
        return str(pinned)
    found = shutil.which(name)
    if not found:
        raise ToolError(
            f"{name} not found: run `make tools` (installs pinned helm, kubeconform, actionlint, helm-docs, promtool)"
        )
    return found


def run(args: list[str], cwd: Path | None = None, stdin: str | None = None) -> str:
    """Run a tool and return stdout; a non-zero exit raises ToolError with its stderr."""
    result = subprocess.run([find_tool(args[0]), *args[1:]], cwd=cwd, input=stdin, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        detail = result.stderr.strip() or result.stdout.strip()
        raise ToolError(f"{' '.join(args[:3])} ... failed ({result.returncode}):\n{detail}")
    return result.stdout
