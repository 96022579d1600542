"""A local cluster (polyp-cluster) with the real Argo CD syncing a file:// clone of this working tree."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from polyp_gitops import live

REPO = Path(__file__).resolve().parents[2]
TOOLS_BIN = REPO / ".tools" / "bin"
ENV = "dev"
ROOT_APP = f"polyp-{ENV}"
FIRST_SYNC_TIMEOUT_S = float(os.environ.get("POLYP_FIRST_SYNC_TIMEOUT_S", 1500))


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def snapshot_repository(tmp: Path) -> tuple[Path, Path]:
    """A bare repository holding this working tree as one commit (what Argo CD reads), and a clone to push from."""
    seed = tmp / "seed"
    files = (
        subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, check=True, capture_output=True)
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, files):
        source = REPO / name
        if source.is_file():
            (seed / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, seed / name)
    git("init", "-q", "-b", "main", cwd=seed)
    for args in (
        ("config", "user.email", "ci@polyp.invalid"),
        ("config", "user.name", "polyp test"),
        ("add", "-A"),
        ("commit", "-q", "-m", "snapshot of the working tree"),
    ):
        git(*args, cwd=seed)
    bare = tmp / "platform.git"
    git("clone", "-q", "--bare", str(seed), str(bare), cwd=tmp)
    work = tmp / "work"
    git("clone", "-q", str(bare), str(work), cwd=tmp)
    git("config", "user.email", "ci@polyp.invalid", cwd=work)
    git("config", "user.name", "polyp test", cwd=work)
    return bare, work


def run_kubectl(
    kubeconfig: str, env: dict[str, str], *args: str, stdin: str | None = None, check: bool = True
) -> subprocess.CompletedProcess:
    """The cluster's own kubectl; with check, a failure fails the test with kubectl's message."""
    result = subprocess.run(
        [str(TOOLS_BIN / "kubectl"), f"--kubeconfig={kubeconfig}", *args], input=stdin, capture_output=True, text=True, env=env
    )
    if check and result.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)}: {result.stderr}")
    return result


@dataclass
class Platform:
    env: dict[str, str]
    kubeconfig: str
    bare: Path
    work: Path
    chart_mirror: str
    first_sync: live.SyncRecord
    state_dir: Path

    def kubectl(self, *args: str, stdin: str | None = None) -> str:
        return run_kubectl(self.kubeconfig, self.env, *args, stdin=stdin).stdout

    def get(self, *args: str) -> dict | None:
        """The object as JSON; None where kubectl cannot get it (gone, not yet there)."""
        result = run_kubectl(self.kubeconfig, self.env, "get", *args, "-o", "json", check=False)
        return json.loads(result.stdout) if result.returncode == 0 else None

    def applications(self) -> dict[str, live.AppState]:
        return live.applications(kubeconfig=self.kubeconfig)

    def push(self, message: str) -> str:
        """Commit what changed in the work clone and push it to the repository Argo CD watches."""
        git("commit", "-q", "-am", message, cwd=self.work)
        git("push", "-q", "origin", "main", cwd=self.work)
        return git("rev-parse", "HEAD", cwd=self.work)

    def revert_last(self) -> None:
        git("revert", "--no-edit", "HEAD", cwd=self.work)
        git("push", "-q", "origin", "main", cwd=self.work)

    def wait(self, check, timeout_s: float, what: str, interval_s: float = 1.0):
        """Poll check() until truthy; the seconds it took. Fails naming `what` and the Applications' state."""
        began = time.monotonic()
        while time.monotonic() - began < timeout_s:
            if check():
                return time.monotonic() - began
            time.sleep(interval_s)
        states = "\n".join(f"  {s.name}: {s.sync}/{s.health} {s.message}" for s in self.applications().values())
        raise AssertionError(f"{what}: not within {timeout_s:.0f} s\n{states}")

    def all_synced_healthy(self) -> live.SyncRecord:
        return live.wait_synced_healthy(ROOT_APP, 600, kubeconfig=self.kubeconfig, log=lambda m: print(m, flush=True))


def is_ready(obj: dict | None) -> bool:
    """A node's or pod's Ready condition is True (False for None: not there yet)."""
    conditions = (obj or {}).get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def build_images(archives: Path, *components: str) -> None:
    """make images ENV=dev: our images at the tags dev pins, as OCI archives to load into the real node."""
    began = time.monotonic()
    subprocess.run(
        ["bash", str(REPO / "bootstrap" / "build-images.sh"), "--env", ENV, "--archives", str(archives), *components],
        check=True,
        env={**os.environ, "PATH": f"{TOOLS_BIN}:{os.environ['PATH']}"},
    )
    print(f"{', '.join(components)} built in {time.monotonic() - began:.0f} s", flush=True)


@contextlib.contextmanager
def local_cluster(state_dir: Path):
    """polyp-cluster up with its state in state_dir; yields (env, its exports); stops it after."""
    env = {
        **os.environ,
        "POLYP_CLUSTER_DIR": str(state_dir),
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), str(TOOLS_BIN), os.environ["PATH"]]),
    }
    cluster = [str(Path(sys.executable).parent / "polyp-cluster")]
    try:
        subprocess.run([*cluster, "up"], env=env, check=True)
        out = subprocess.run([*cluster, "env"], env=env, check=True, capture_output=True, text=True).stdout
        yield env, dict(line.removeprefix("export ").split("=", 1) for line in out.splitlines())
    finally:
        subprocess.run([*cluster, "down"], env=env, check=False)
        # The node's images take GBs (the training image is 7 GB unpacked), and pytest keeps its last three runs.
        shutil.rmtree(state_dir / "node" / "containerd", ignore_errors=True)
        print(f"cluster logs kept in {state_dir / 'logs'}")


# Per module, not per package: stopped before the next module starts its own cluster (two at once doubled the peak
# memory, and their kubelets shared /var/log/pods, where each deletes the folders of pods it does not know).
@pytest.fixture(scope="module")
def platform(tmp_path_factory) -> Platform:
    if not (TOOLS_BIN / "argocd").is_file():
        pytest.fail("the local cluster's binaries are missing: `make cluster-binaries` builds them (make test does)")
    tmp = tmp_path_factory.mktemp("gitops-live")
    bare, work = snapshot_repository(tmp)
    real_node = os.geteuid() == 0  # polyp-cluster starts one as root (CI): the images built here run there
    if real_node:
        build_images(tmp / "images", "frontend")
    with local_cluster(tmp / "cluster") as (env, exports):
        if real_node:
            polyp_cluster = str(Path(sys.executable).parent / "polyp-cluster")
            subprocess.run([polyp_cluster, "load", str(tmp / "images" / "frontend.tar")], env=env, check=True)
        began = time.monotonic()
        subprocess.run(
            [
                "bash",
                str(work / "bootstrap" / "install.sh"),
                "--target",
                "local",
                "--env",
                ENV,
                "--repo",
                f"file://{bare}",
                "--revision",
                "main",
            ],
            env=env,
            check=True,
        )
        print(f"install.sh --target local: {time.monotonic() - began:.0f} s", flush=True)
        record = live.wait_synced_healthy(
            ROOT_APP, FIRST_SYNC_TIMEOUT_S, kubeconfig=exports["KUBECONFIG"], log=lambda m: print(m, flush=True)
        )
        yield Platform(
            env=env,
            kubeconfig=exports["KUBECONFIG"],
            bare=bare,
            work=work,
            chart_mirror=exports["POLYP_CHART_MIRROR"],
            first_sync=record,
            state_dir=tmp / "cluster",
        )
