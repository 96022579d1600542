"""Images on the real node: nothing can be pulled here, so each one is built here and imported into its containerd.

- the sandbox image: Kubernetes' own pause.c (from the pinned k8s.io/kubernetes module), compiled statically;
- upstream images that are one static Go binary (CoreDNS, and BINARY_IMAGES: CloudNativePG's operator), built by
  `make cluster-binaries` from their pinned modules, each FROM scratch;
- upstream images the platform's charts render (UPSTREAM_IMAGES): rebuilt here from Debian's packages of the
  same program, under the exact reference the chart renders (the charts stay as they are);
- the platform's images: `make images` (bootstrap/build-images.sh) writes OCI archives; load() imports them
  under the exact reference the charts render, and placement.py then sends their pods to the node.
"""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from polyp_gitops.repo import INSTALL_ROOT

from .node import CONTAINERD_SOCKET, PAUSE_IMAGE
from .processes import SHARE, TOOLS_BIN

K8S_MODULE_DIR = INSTALL_ROOT / "dev" / "local-cluster" / "go" / "k8s"
PAUSE_ARCHIVE = SHARE / "pause.oci.tar"


def _run(*args: str, cwd: Path | None = None) -> str:
    result = subprocess.run(args, capture_output=True, text=True, cwd=cwd)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(args)}: {result.stderr.strip()[-2000:]}")
    return result.stdout


def ctr(*args: str) -> str:
    return _run("ctr", "--address", str(CONTAINERD_SOCKET), "--namespace", "k8s.io", *args)


def _recipe(image) -> str:
    """A short hash of an image's recipe (its dataclass fields): archives are named after it."""
    return hashlib.sha256(json.dumps(image.__dict__, sort_keys=True).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class BinaryImage:
    """An upstream image that is one static binary, FROM scratch: the binary its module folder pins."""

    ref: str  # exactly as the chart renders it; the tag names the version dev/local-cluster/go/<module> pins
    binary: str  # in TOOLS_BIN
    path: str  # where the binary lies in the image (and its entrypoint unless links name one)
    user: str = "65535:65535"
    links: tuple[str, ...] = ()  # symbolic links to path; the first is the entrypoint

    @property
    def archive(self) -> Path:
        """Named after the recipe, as _archive_of names Debian images': a changed layout builds anew."""
        return SHARE / f"{self.binary}-{_recipe(self)}.oci.tar"


COREDNS = BinaryImage("registry.k8s.io/coredns/coredns:v1.15.0", "coredns", "/coredns")
# The cloudnative-pg chart's Deployment runs /manager, and so does the init container it adds to every PostgreSQL
# pod (it copies /manager into the pod as the instance manager). The operator finds the instance managers it can
# hand out by globbing operator/manager_<GOARCH> from / (upstream's Dockerfile lays the image out the same way).
_GOARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
CNPG_OPERATOR = BinaryImage(
    "ghcr.io/cloudnative-pg/cloudnative-pg:1.28.1", "cnpg-manager", f"/operator/manager_{_GOARCH}", "10001:10001", ("/manager",)
)
# Built and loaded by ensure_upstream_images (dns.py loads CoreDNS's itself, before its pod).
BINARY_IMAGES = [CNPG_OPERATOR]


@dataclass(frozen=True)
class DebianImage:
    """An upstream image's role, filled from Debian's packages: what the chart runs in it is there, at its path."""

    ref: str  # exactly as the chart renders it
    suite: str  # the Debian suite whose package is nearest the pinned version
    packages: str
    user: str
    cmd: list[str]
    contents: str  # what is really inside, where it differs from the tag (its description label)
    path: str = ""  # prepended to PATH: where the package keeps the commands the chart runs
    customize: str = ""  # shell run on the finished root filesystem "$1" (mmdebstrap's customize hook)


# Debian's mirror here is frozen in time: a testing suite's Release file is past its Valid-Until, and apt
# would refuse it. The packages are still verified against the signed Release file.
_DEBIAN_MIRROR = "deb http://deb.debian.org/debian {suite} main"

UPSTREAM_IMAGES = [
    # The valkey chart (apps/values.yaml, component redis): its init script needs sh and coreutils, its
    # container runs valkey-server and its probes valkey-cli, as uid 1000. Debian has 9.1.2, not the pinned 9.1.1.
    DebianImage(
        ref="docker.io/valkey/valkey:9.1.1",
        suite="forky",
        packages="valkey-server,valkey-tools",
        user="1000:1000",
        cmd=["valkey-server"],
        contents="Valkey 9.1.2 from Debian forky (Debian no longer has 9.1.1)",
    ),
    # The database chart's CloudNativePG operand image (charts/database imageName): CloudNativePG's instance
    # manager runs postgres, initdb and pg_ctl from PATH as uid 26, the postgres user of its own images.
    DebianImage(
        ref="ghcr.io/cloudnative-pg/postgresql:17.5",
        suite="trixie",
        packages="postgresql-17",
        user="26:26",
        cmd=["postgres"],
        contents="PostgreSQL 17.12 from Debian trixie (Debian no longer has 17.5)",
        path="/usr/lib/postgresql/17/bin",
        # The package's own cluster is not the operand's; the postgres user takes CloudNativePG's uid.
        customize='rm -rf "$1"/etc/postgresql/17 "$1"/var/lib/postgresql/17 && chroot "$1" usermod -u 26 postgres',
    ),
]


def _commit(container: str, ref: str, archive: Path) -> None:
    """Commit a buildah working container as ref and write it as an OCI archive."""
    try:
        _run("buildah", "commit", "-q", container, ref)
    finally:
        subprocess.run(["buildah", "rm", container], capture_output=True)
    archive.parent.mkdir(parents=True, exist_ok=True)
    _run("buildah", "push", "-q", ref, f"oci-archive:{archive}:{ref}")


def _scratch_image(binary: Path, ref: str, archive: Path, path: str, user: str = "65535:65535", links=()) -> None:
    """An image of one static binary at path, and links to it, FROM scratch (run as nobody unless told), written as
    an OCI archive; its entrypoint is the first link, or path."""
    with tempfile.TemporaryDirectory() as tmp:
        layer = Path(tmp) / "layer.tar"
        with tarfile.open(layer, "w") as tar:
            tar.add(binary, path.lstrip("/"))
            for link in links:
                info = tarfile.TarInfo(link.lstrip("/"))
                info.type, info.linkname = tarfile.SYMTYPE, path
                tar.addfile(info)
        container = _run("buildah", "from", "scratch").strip()
        _run("buildah", "add", container, str(layer), "/")
    entrypoint = [links[0] if links else path]
    _run("buildah", "config", "--entrypoint", json.dumps(entrypoint), "--user", user, container)
    _commit(container, ref, archive)


def _debian_image(image: DebianImage, archive: Path) -> None:
    """A root filesystem of Debian's packages (mmdebstrap, minbase) as a FROM-scratch image."""
    with tempfile.TemporaryDirectory() as tmp:
        rootfs = Path(tmp) / "rootfs.tar"
        _run(
            "mmdebstrap",
            "--quiet",
            "--variant=minbase",
            '--aptopt=Acquire::Check-Valid-Until "false"',
            f"--include={image.packages}",
            '--customize-hook=rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin "$1"/usr/share/doc "$1"/usr/share/man',
            *([f"--customize-hook={image.customize}"] if image.customize else []),
            image.suite,
            str(rootfs),
            _DEBIAN_MIRROR.format(suite=image.suite),
        )
        container = _run("buildah", "from", "scratch").strip()
        _run("buildah", "add", container, str(rootfs), "/")
        _run(
            "buildah",
            "config",
            "--user",
            image.user,
            "--cmd",
            json.dumps(image.cmd),
            "--env",
            f"PATH={image.path + ':' if image.path else ''}/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "--label",
            f"org.opencontainers.image.description={image.contents}",
            container,
        )
        _commit(container, image.ref, archive)


def _archive_of(image: DebianImage) -> Path:
    """Named after the recipe: a changed recipe builds anew, an unchanged one is reused."""
    return SHARE / "upstream-images" / f"{image.ref.rsplit('/', 1)[-1].replace(':', '-')}-{_recipe(image)}.oci.tar"


def _build_pause_archive() -> None:
    module = _run("go", "list", "-m", "-f", "{{.Dir}}", "k8s.io/kubernetes", cwd=K8S_MODULE_DIR).strip()
    with tempfile.TemporaryDirectory() as tmp:
        binary = Path(tmp) / "pause"
        _run("cc", "-Os", "-static", "-o", str(binary), f"{module}/build/pause/linux/pause.c")
        _scratch_image(binary, PAUSE_IMAGE, PAUSE_ARCHIVE, "/pause")


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


def ensure_binary_image(image: BinaryImage) -> None:
    """Build the image when its binary is newer than its archive, and load it."""
    binary = TOOLS_BIN / image.binary
    if not image.archive.exists() or image.archive.stat().st_mtime < binary.stat().st_mtime:
        _scratch_image(binary, image.ref, image.archive, image.path, image.user, image.links)
    load(image.archive)  # again after a rebuild: the node keeps the reference, now at the new digest


def ensure_upstream_images() -> None:
    """Build (once) and load every image of BINARY_IMAGES and UPSTREAM_IMAGES."""
    for binary_image in BINARY_IMAGES:
        ensure_binary_image(binary_image)
    present = loaded()
    for image in UPSTREAM_IMAGES:
        archive = _archive_of(image)
        built = not archive.exists()
        if built:
            _debian_image(image, archive)
        if built or image.ref not in present:
            load(archive)


def platform_images() -> list[str]:
    """What placement may send to the node: every loaded image but the sandbox's (CoreDNS's included)."""
    return sorted(ref for ref in loaded() if ref != PAUSE_IMAGE)
