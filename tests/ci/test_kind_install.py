"""install.sh --target kind builds the images of the checkout at the tags the environment pins and loads them into kind.

kind and a Docker engine cannot run here: recording stand-ins take the places of kind, kubectl, helm and of
build-images.sh (whose real build is tested by tests/cluster/test_real_node.py with buildah). What is real:
install.sh itself, run as a user would, and the order of what it does.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

FAKE = """#!/bin/sh
echo "{name} $*" >> "$CALLS"
{body}
"""


def _fake(bin_dir: Path, name: str, body: str = "exit 0") -> None:
    path = bin_dir / name
    path.write_text(FAKE.format(name=name, body=body))
    path.chmod(0o755)


def test_kind_install_builds_and_loads_the_pinned_images_before_argo_cd_syncs(repo_root, tmp_path):
    checkout = tmp_path / "checkout"
    shutil.copytree(repo_root / "bootstrap", checkout / "bootstrap")
    shutil.copytree(repo_root / "environments", checkout / "environments")
    calls = tmp_path / "calls"
    # The stand-in build writes one archive per image, as the real one does with --archives DIR.
    (checkout / "bootstrap" / "build-images.sh").write_text(
        FAKE.format(
            name="build-images.sh",
            body='while [ $# -gt 0 ]; do [ "$1" = --archives ] && dir="$2"; shift; done\n'
            'for c in control-service frontend training; do : > "$dir/$c.tar"; done',
        )
    )
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _fake(bin_dir, "kind", '[ "$1 $2" = "get clusters" ] && echo polyp; exit 0')
    _fake(bin_dir, "kubectl", '[ "$1" = -n ] && [ "$3" = get ] && exit 1; exit 0')  # no Secret exists yet
    _fake(bin_dir, "helm")
    _fake(bin_dir, "git", "exit 1")
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "CALLS": str(calls), "HOME": str(tmp_path)}
    result = subprocess.run(
        ["bash", str(checkout / "bootstrap" / "install.sh"), "--target", "kind", "--env", "dev", "--repo", "https://x/y.git"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    recorded = calls.read_text().splitlines()
    build = [c for c in recorded if c.startswith("build-images.sh")]
    assert len(build) == 1 and "--env dev" in build[0] and "--reuse-existing" in build[0]
    loads = [c for c in recorded if c.startswith("kind load image-archive")]
    assert sorted(c.split()[3].rsplit("/", 1)[1] for c in loads) == ["control-service.tar", "frontend.tar", "training.tar"]
    assert all(c.endswith("--name polyp") for c in loads)
    # Loaded before Argo CD is installed and handed the root Application.
    argocd = next(i for i, c in enumerate(recorded) if c.startswith("helm upgrade --install argocd"))
    assert max(recorded.index(c) for c in loads) < argocd
    assert not os.path.exists(build[0].split("--archives ")[1].split()[0]), "the archives folder is removed"
