"""Images on the real node: nothing can be pulled here, so each one is built here and imported into its containerd.

- the sandbox image: Kubernetes' own pause.c (from the pinned k8s.io/kubernetes module), compiled statically;
- upstream images that are one static Go binary (CoreDNS, and BINARY_IMAGES: the CloudNativePG and KubeRay
  operators), built by `make cluster-binaries` from their pinned modules, each FROM scratch;
- upstream images the platform's charts render (UPSTREAM_IMAGES): rebuilt here from Debian's packages of the
  same program (or, for MinIO, its binaries built from the pinned commits on a Debian base), under the exact
  reference the chart renders (the charts stay as they are);
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


def _recipe(image: BinaryImage | DebianImage) -> str:
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
    contents: str = ""  # what is really inside, where it differs from the tag (its description label)
    extra: tuple[tuple[str, str], ...] = ()  # more binaries: (file in TOOLS_BIN, its path in the image)

    @property
    def binaries(self) -> list[Path]:
        return [TOOLS_BIN / self.binary] + [TOOLS_BIN / name for name, _ in self.extra]

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
# The kuberay-operator chart runs /manager as a non-root user (upstream's image: distroless, uid 65532). The Go
# module proxy here serves v1.7.0's version but not its source, so the operator is v1.6.2, and /manager is
# go/kuberay/featuregates: it drops the gates 1.7.0's chart sets to false that v1.6.2 does not know, and runs it.
KUBERAY_OPERATOR = BinaryImage(
    "quay.io/kuberay/operator:v1.7.0",
    "kuberay-featuregates",
    "/manager",
    "65532:65532",
    contents="KubeRay operator v1.6.2 (/operator), run by /manager without the gates v1.6.2 lacks that are off",
    extra=(("kuberay-operator", "/operator"),),
)
# Built and loaded by ensure_upstream_images (dns.py loads CoreDNS's itself, before its pod).
BINARY_IMAGES = [CNPG_OPERATOR, KUBERAY_OPERATOR]


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
    binaries: tuple[tuple[str, str], ...] = ()  # (file in TOOLS_BIN, its path in the image): built from pinned modules
    env: tuple[str, ...] = ()  # NAME=value, as the upstream image sets them
    entrypoint: tuple[str, ...] = ()
    requirements: str = ""  # a hash-locked pip requirements file (repository path), installed into /opt/venv


# Debian's mirror here is frozen in time: a testing suite's Release file is past its Valid-Until, and apt
# would refuse it. The packages are still verified against the signed Release file.
_DEBIAN_MIRROR = "deb http://deb.debian.org/debian {suite} main"

# MinIO's images are built on Red Hat's ubi-micro, where /bin/sh is bash; the chart's scripts rely on it (`[[`).
_SH_IS_BASH = 'ln -sf bash "$1"/bin/sh'

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
    # The minio chart's server runs `/bin/sh -ce "/usr/bin/docker-entrypoint.sh minio server ..."` as uid 1000;
    # MinIO is not packaged by Debian, so its server (go/minio, the pinned release's commit), mc and that release's
    # own entrypoint script lie on a Debian base, with upstream's environment (Dockerfile.release).
    DebianImage(
        ref="quay.io/minio/minio:RELEASE.2025-09-07T16-13-09Z",
        suite="bookworm",
        packages="ca-certificates",
        user="0:0",  # upstream's images name no user; the chart runs both as uid 1000
        cmd=["minio"],
        contents="MinIO RELEASE.2025-09-07T16-13-09Z built from its source commit, on Debian bookworm",
        binaries=(
            ("minio", "/usr/bin/minio"),
            ("mc", "/usr/bin/mc"),
            ("minio-docker-entrypoint.sh", "/usr/bin/docker-entrypoint.sh"),
        ),
        customize=_SH_IS_BASH,
        env=(
            "MINIO_ACCESS_KEY_FILE=access_key",
            "MINIO_SECRET_KEY_FILE=secret_key",
            "MINIO_ROOT_USER_FILE=access_key",
            "MINIO_ROOT_PASSWORD_FILE=secret_key",
            "MINIO_KMS_SECRET_KEY_FILE=kms_master_key",
            "MINIO_CONFIG_ENV_FILE=config.env",
            "MC_CONFIG_DIR=/tmp/.mc",
        ),
        entrypoint=("/usr/bin/docker-entrypoint.sh",),
    ),
    # The minio chart's bucket, user and policy Jobs run `/bin/sh /config/<script>`, which calls mc.
    DebianImage(
        ref="quay.io/minio/mc:RELEASE.2025-08-13T08-35-41Z",
        suite="bookworm",
        packages="ca-certificates",
        user="0:0",
        cmd=[],
        entrypoint=("mc",),
        contents="MinIO client RELEASE.2025-08-13T08-35-41Z built from its source commit, on Debian bookworm",
        binaries=(("mc", "/usr/bin/mc"),),
        customize=_SH_IS_BASH,
    ),
    # The mlflow chart runs `mlflow server` (and its migration init container `python /opt/mlflow/migrations.py`)
    # from PATH as uid 1001 with a read-only root; upstream's image is MLflow from PyPI on Python, as this is.
    DebianImage(
        ref="docker.io/burakince/mlflow:3.15.1",
        suite="bookworm",
        packages="python3.11,python3.11-venv,ca-certificates",
        user="1001:1001",
        cmd=["mlflow", "server"],
        contents="MLflow 3.15.1 (with its auth app) with psycopg2 and boto3 from PyPI (dev/local-cluster/images/mlflow) "
        "on Debian bookworm",
        path="/opt/venv/bin",
        requirements="dev/local-cluster/images/mlflow/requirements.txt",
    ),
]


def _commit(container: str, ref: str, archive: Path) -> None:
    """Commit a buildah working container as ref and write it as an OCI archive, the one copy kept: buildah's own
    (vfs, uncompressed) is removed, and so are archives of the same image from earlier recipes."""
    try:
        _run("buildah", "commit", "-q", container, ref)
    finally:
        subprocess.run(["buildah", "rm", container], capture_output=True)
    archive.parent.mkdir(parents=True, exist_ok=True)
    try:
        _run("buildah", "push", "-q", ref, f"oci-archive:{archive}:{ref}")
    finally:
        subprocess.run(["buildah", "rmi", ref], capture_output=True)
    stem = archive.name.rsplit("-", 1)[0]  # <name>-<recipe>.oci.tar
    for superseded in archive.parent.glob(f"{stem}-*.oci.tar"):
        if superseded != archive and len(superseded.name) == len(archive.name):
            superseded.unlink()


def _scratch_image(
    binary: Path,
    ref: str,
    archive: Path,
    path: str,
    user: str = "65535:65535",
    links: tuple[str, ...] = (),
    contents: str = "",
    extra: list[tuple[Path, str]] | None = None,
) -> None:
    """An image of one static binary at path, and links to it, FROM scratch (run as nobody unless told), written as
    an OCI archive; its entrypoint is the first link, or path. extra: more (binary, path) pairs."""
    with tempfile.TemporaryDirectory() as tmp:
        layer = Path(tmp) / "layer.tar"
        with tarfile.open(layer, "w") as tar:
            tar.add(binary, path.lstrip("/"))
            for other, other_path in extra or []:
                tar.add(other, other_path.lstrip("/"))
            for link in links:
                info = tarfile.TarInfo(link.lstrip("/"))
                info.type, info.linkname = tarfile.SYMTYPE, path
                tar.addfile(info)
        container = _run("buildah", "from", "scratch").strip()
        _run("buildah", "add", container, str(layer), "/")
    entrypoint = [links[0] if links else path]
    label = ["--label", f"org.opencontainers.image.description={contents}"] if contents else []
    _run("buildah", "config", "--entrypoint", json.dumps(entrypoint), "--user", user, *label, container)
    _commit(container, ref, archive)


def _pip_install_hooks(requirements: Path) -> list[str]:
    """mmdebstrap hooks that install a hash-locked requirements file into /opt/venv inside the root filesystem,
    trusting this machine's own CA certificates as the image's build does (a TLS-inspecting proxy's included)."""
    return [
        '--customize-hook=cp /usr/local/share/ca-certificates/*.crt "$1"/usr/local/share/ca-certificates/ 2>/dev/null; '
        'chroot "$1" update-ca-certificates >/dev/null',
        f'--customize-hook=cp {requirements} "$1"/tmp/requirements.txt',
        '--customize-hook=chroot "$1" python3 -m venv /opt/venv',
        '--customize-hook=chroot "$1" env PIP_CERT=/etc/ssl/certs/ca-certificates.crt /opt/venv/bin/pip install --quiet '
        "--no-cache-dir --require-hashes -r /tmp/requirements.txt",
        '--customize-hook=rm "$1"/tmp/requirements.txt',
    ]


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
            *(_pip_install_hooks(INSTALL_ROOT / image.requirements) if image.requirements else []),
            image.suite,
            str(rootfs),
            _DEBIAN_MIRROR.format(suite=image.suite),
        )
        container = _run("buildah", "from", "scratch").strip()
        _run("buildah", "add", container, str(rootfs), "/")
        for binary, path in image.binaries:
            _run("buildah", "add", container, str(TOOLS_BIN / binary), path)
        _run(
            "buildah",
            "config",
            "--user",
            image.user,
            *(["--entrypoint", json.dumps(list(image.entrypoint))] if image.entrypoint else []),
            "--cmd",
            json.dumps(image.cmd),
            "--env",
            f"PATH={image.path + ':' if image.path else ''}/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            *(arg for variable in image.env for arg in ("--env", variable)),
            "--label",
            f"org.opencontainers.image.description={image.contents}",
            container,
        )
        _commit(container, image.ref, archive)


def _archive_of(image: DebianImage) -> Path:
    """Named after the recipe (its requirements' content included): a changed recipe builds anew, an unchanged one
    is reused."""
    recipe = _recipe(image)
    if image.requirements:
        locked = hashlib.sha256((INSTALL_ROOT / image.requirements).read_bytes()).hexdigest()
        recipe = hashlib.sha256(f"{recipe}{locked}".encode()).hexdigest()[:12]
    return SHARE / "upstream-images" / f"{image.ref.rsplit('/', 1)[-1].replace(':', '-')}-{recipe}.oci.tar"


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


def _stale(archive: Path, binaries: list[Path]) -> bool:
    """Whether the archive is missing or older than a binary it holds (a rebuilt binary builds the image anew)."""
    return not archive.exists() or any(archive.stat().st_mtime < binary.stat().st_mtime for binary in binaries)


def ensure_binary_image(image: BinaryImage) -> None:
    """Build the image when a binary of it is newer than its archive, and load it."""
    if _stale(image.archive, image.binaries):
        extra = [(TOOLS_BIN / name, path) for name, path in image.extra]
        _scratch_image(
            TOOLS_BIN / image.binary, image.ref, image.archive, image.path, image.user, image.links, image.contents, extra
        )
    load(image.archive)  # again after a rebuild: the node keeps the reference, now at the new digest


def ensure_upstream_images() -> None:
    """Build (once) and load every image of BINARY_IMAGES and UPSTREAM_IMAGES."""
    for binary_image in BINARY_IMAGES:
        ensure_binary_image(binary_image)
    present = loaded()
    for image in UPSTREAM_IMAGES:
        archive = _archive_of(image)
        built = _stale(archive, [TOOLS_BIN / binary for binary, _ in image.binaries])
        if built:
            _debian_image(image, archive)
        if built or image.ref not in present:
            load(archive)


def _familiar(ref: str) -> str:
    """Docker Hub's short form of a reference, as charts write it (docker.io/burakince/mlflow:3 -> burakince/mlflow:3);
    the kubelet pulls either from the same image."""
    name = ref.removeprefix("docker.io/")
    return name.removeprefix("library/") if name != ref else ref


def platform_images() -> list[str]:
    """What placement may send to the node: every loaded image but the sandbox's (CoreDNS's included), under each
    name a chart may render it by."""
    refs = [ref for ref in loaded() if ref != PAUSE_IMAGE]
    return sorted(set(refs) | {_familiar(ref) for ref in refs})
