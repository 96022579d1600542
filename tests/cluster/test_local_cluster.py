"""make cluster's promise: a second `up` reuses what runs; `down` stops every process it started."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import is_ready, local_cluster, run_kubectl

pytestmark = pytest.mark.cluster


def _alive(pid: int) -> bool:
    try:
        return not Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    except OSError:
        return False


def test_up_twice_reuses_the_running_cluster_and_down_stops_it(tmp_path: Path):
    state_file = tmp_path / "cluster" / "state.json"
    with local_cluster(tmp_path / "cluster") as (env, exports):
        first = json.loads(state_file.read_text())
        subprocess.run([str(Path(sys.executable).parent / "polyp-cluster"), "up"], env=env, check=True, capture_output=True)
        second = json.loads(state_file.read_text())
        assert second == first, "a second `up` started something again"
        assert all(_alive(pid) for pid in first["pids"].values())
        nodes = json.loads(run_kubectl(exports["KUBECONFIG"], env, "get", "nodes", "-o", "json").stdout)["items"]
        ready = [n["metadata"]["name"] for n in nodes if is_ready(n)]
        # Two kwok nodes, and the real node where containerd can run (root, as in CI).
        assert sorted(ready) == ["kwok-node-0", "kwok-node-1"] + (["polyp-real-node"] if os.geteuid() == 0 else [])
    assert not [name for name, pid in first["pids"].items() if _alive(pid)]
