"""Images on the real node: nothing can be pulled here, so each one is built here and imported into its containerd.

- the sandbox image: Kubernetes' own pause.c (from the pinned k8s.io/kubernetes module), compiled statically;
- the platform's images: `make images` (bootstrap/build-images.sh) writes OCI archives; load() imports them
  under the exact reference the charts render, and placement.py then sends their pods to the node.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

from .node import CONTAINERD_SOCKET, PAUSE_IMAGE
from .processes import SHARE

K8S_MODULE_DIR = Path(__file__).resolve().parents[5] / "dev" / "local-cluster" / "go" / "k8s"
PAUSE_ARCHIVE = SHARE / "pause.oci.tar"


def _run(*args: str, cwd: Path | None = None) -> str:
    result = subprocess.run(args, capture_output=True, text=True, cwd=cwd)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(args)}: {result.stderr.strip()[-2000:]}")
    return result.stdout


def ctr(*args: str) -> str:
    return _run("ctr", "--address", str(CONTAINERD_SOCKET), "--namespace", "k8s.io", *args)


def _build_pause_archive() -> None:
    module = _run("go", "list", "-m", "-f", "{{.Dir}}", "k8s.io/kubernetes", cwd=K8S_MODULE_DIR).strip()
    with tempfile.TemporaryDirectory() as tmp:
        binary = Path(tmp) / "pause"
        _run("cc", "-Os", "-static", "-o", str(binary), f"{module}/build/pause/linux/pause.c")
        container = _run("buildah", "from", "scratch").strip()
        try:
            _run("buildah", "copy", container, str(binary), "/pause")
            _run("buildah", "config", "--entrypoint", '["/pause"]', "--user", "65535:65535", container)
            _run("buildah", "commit", "-q", container, PAUSE_IMAGE)
        finally:
            subprocess.run(["buildah", "rm", container], capture_output=True)
    PAUSE_ARCHIVE.parent.mkdir(parents=True, exist_ok=True)
    _run("buildah", "push", "-q", PAUSE_IMAGE, f"oci-archive:{PAUSE_ARCHIVE}:{PAUSE_IMAGE}")


def loaded() -> dict[str, str]:
    """Reference -> digest of every image in the node's containerd."""
    listing = ctr("images", "list")
    found = {}
    for line in listing.splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 3 and not fields[0].startswith("sha256:"):
            found[fields[0]] = fields[2]
    return found


def load(archive: Path) -> list[str]:
    """Import an OCI archive; the references it brought."""
    before = loaded()
    ctr("images", "import", str(archive))
    return sorted(ref for ref, digest in loaded().items() if before.get(ref) != digest)


def ensure_pause_image() -> None:
    if PAUSE_IMAGE in loaded():
        return
    if not PAUSE_ARCHIVE.exists():
        _build_pause_archive()
    load(PAUSE_ARCHIVE)


def archive_refs(archive: Path) -> list[str]:
    """The references an OCI archive's index names (org.opencontainers.image.ref.name, as buildah writes them)."""
    index = json.loads(_run("tar", "-xOf", str(archive), "index.json"))
    return [m.get("annotations", {}).get("org.opencontainers.image.ref.name", "") for m in index.get("manifests", [])]


def platform_images() -> list[str]:
    """What placement may send to the node: every loaded image but the sandbox's."""
    return sorted(ref for ref in loaded() if ref != PAUSE_IMAGE)
