"""A Helm repository on loopback serving the packaged upstream charts, as `install.sh --chart-mirror` expects."""

from __future__ import annotations

import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import polyp_fixtures

from .processes import STATE_DIR, State, binary, start, wait_until

MIRROR_DIR = STATE_DIR / "charts"


def _index(url: str) -> None:
    MIRROR_DIR.mkdir(parents=True, exist_ok=True)
    for archive in sorted(Path(polyp_fixtures.gitops_environment()["POLYP_CHARTS_DIR"]).glob("*.tgz")):
        target = MIRROR_DIR / archive.name
        if not target.exists():
            shutil.copyfile(archive, target)
    subprocess.run([binary("helm"), "repo", "index", str(MIRROR_DIR), "--url", url], check=True)


def up(state: State) -> str:
    """Serve every upstream chart archive (POLYP_CHARTS_DIR, else the charts fixtures); returns the repository URL."""
    port = state.port("chart-mirror")
    url = f"http://127.0.0.1:{port}"
    if not (MIRROR_DIR / "index.yaml").exists():
        _index(url)
    start(
        state,
        "chart-mirror",
        [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "--directory", str(MIRROR_DIR), str(port)],
        match="http.server",
    )
    wait_until(lambda: _answers(f"{url}/index.yaml"), 30, "chart mirror")
    return url


def _answers(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as response:
        return response.status == 200
