"""`make test`'s install steps on a machine where nothing is installed yet, simulated.

A PATH holding only basic commands hides the installed tools (promtool, redis-server, chromium, uv, the
Go tools); recording fakes stand in for apt-get, sudo, go and pip, so the recipes run exactly as on a
fresh machine, as root and as a user with sudo, without changing this one.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

BASIC = [
    "bash",
    "sh",
    "make",
    "env",
    "cat",
    "grep",
    "sed",
    "awk",
    "tr",
    "dirname",
    "basename",
    "mkdir",
    "rm",
    "uname",
    "head",
    "tail",
    "printf",
    "test",
    "ln",
    "readlink",
]


class FreshMachine:
    """A bin folder with only basic commands plus recording fakes; `make` runs there with nothing else."""

    def __init__(self, root: Path, uid: int):
        self.bin, self.calls = root / "bin", root / "calls"
        self.bin.mkdir()
        for name in BASIC:
            if path := shutil.which(name):
                (self.bin / name).symlink_to(path)
        self.fake("id", f'[ "$1" = -u ] && echo {uid} || echo "uid={uid}"')
        self.fake("apt-get", 'echo "apt-get $* (uid $(id -u), DEBIAN_FRONTEND=$DEBIAN_FRONTEND)" >> "$CALLS"')
        if uid != 0:  # runs the command as root would, after recording it
            self.fake("sudo", 'echo "sudo $*" >> "$CALLS"; exec "$@"')
        self.fake("go", 'echo "go $*" >> "$CALLS"')
        self.fake("python3", 'echo "python3 $*" >> "$CALLS"')

    def fake(self, name: str, body: str) -> None:
        script = self.bin / name
        script.write_text(f"#!/bin/sh\n{body}\n")
        script.chmod(0o755)

    def make(self, makefile: Path, workdir: Path, *targets: str) -> subprocess.CompletedProcess:
        env = {"HOME": os.environ.get("HOME", "/root"), "PATH": str(self.bin), "CALLS": str(self.calls)}
        return subprocess.run(
            ["make", "-s", "-C", str(workdir), "-f", str(makefile), *targets], env=env, capture_output=True, text=True
        )

    def recorded(self) -> list[str]:
        return self.calls.read_text().splitlines() if self.calls.exists() else []


@pytest.mark.parametrize("uid", [0, 1000], ids=["root", "user-with-sudo"])
def test_system_packages_install_where_none_is_installed(repo_root, tmp_path, uid):
    machine = FreshMachine(tmp_path, uid)
    # The CNI plugins are found by path, not on PATH: point at a folder this machine lacks too.
    result = machine.make(repo_root / "Makefile", tmp_path, "system-packages", f"CNI_BIN_DIR={tmp_path / 'no-cni'}")
    assert result.returncode == 0, result.stdout + result.stderr
    calls = machine.recorded()
    installs = [c for c in calls if c.startswith("apt-get install")]
    assert len(installs) == 1, calls
    assert {"prometheus", "redis-server", "chromium", "libarchive-tools", "postgresql"} <= set(installs[0].split())
    # The local cluster's real node and the image builds.
    real_node = {"containerd", "runc", "containernetworking-plugins", "iptables", "ipset", "gcc", "libc6-dev"}
    assert real_node | {"buildah", "mmdebstrap", "curl"} <= set(installs[0].split())
    assert "-y" in installs[0].split() and "DEBIAN_FRONTEND=noninteractive" in installs[0]
    # A new machine's unattended upgrades may hold the package lock: every apt-get waits for it, never fails.
    assert all("-o DPkg::Lock::Timeout=600" in c for c in calls if c.startswith("apt-get")), calls
    assert any(c.startswith("apt-get update") for c in calls)
    sudo = [c for c in calls if c.startswith("sudo ")]
    if uid == 0:
        assert sudo == []
    else:  # every apt-get went through sudo
        assert len(sudo) == len([c for c in calls if c.startswith("apt-get")]) == 2, calls


def test_system_packages_installs_nothing_when_all_are_present(repo_root, tmp_path):
    machine = FreshMachine(tmp_path, 0)
    tools = ("promtool", "redis-server", "chromium", "bsdtar", "pg_ctlcluster", "containerd", "runc", "buildah", "mmdebstrap")
    for tool in (*tools, "iptables", "ipset", "cc", "curl"):
        machine.fake(tool, "true")
    cni = tmp_path / "cni"
    cni.mkdir()
    (cni / "bridge").write_text("")
    (cni / "bridge").chmod(0o755)
    result = machine.make(repo_root / "Makefile", tmp_path, "system-packages", f"CNI_BIN_DIR={cni}")
    assert result.returncode == 0, result.stderr
    assert machine.recorded() == []


def test_go_tools_and_uv_install_pinned_versions_into_the_checkout(repo_root, tmp_path):
    """With -C, the Makefile's CURDIR is an empty folder: nothing of this checkout's .tools/ is seen or touched."""
    machine = FreshMachine(tmp_path, 1000)
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    result = machine.make(repo_root / "Makefile", checkout, "go-tools", "uv")
    assert result.returncode == 0, result.stdout + result.stderr
    calls = machine.recorded()
    go = [c for c in calls if c.startswith("go install")]
    assert len(go) == 4, calls  # helm, kubeconform, actionlint, helm-docs
    for call in go:
        assert re.search(r"@v\d+\.\d+\.\d+$", call), f"not pinned: {call}"
    pip = [c for c in calls if c.startswith("python3 -m pip install")]
    assert len(pip) == 1 and re.search(r"--target \S+/checkout/\.tools/uv uv==\d+\.\d+\.\d+$", pip[0]), calls
    assert not any(c.startswith("sudo") for c in calls)  # user-level installs need no root
    uv = checkout / ".tools" / "bin" / "uv"
    assert uv.is_symlink() and os.readlink(uv) == str(checkout / ".tools" / "uv" / "bin" / "uv")
