"""etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok on loopback, and a kubeconfig for them."""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
import urllib.request
from pathlib import Path

from . import pki
from .processes import SHARE, STATE_DIR, State, binary, check_alive, start, wait_until

KUBECONFIG = STATE_DIR / "kubeconfig"
# hostPath PersistentVolumes (kwok's pvc-provision stage): real on the real node (volumes.py), gone with --purge.
VOLUMES_DIR = STATE_DIR / "volumes"
_UPSTREAM_VOLUMES_DIR = "/tmp/kwok-local-path-provisioner"
SERVICE_CIDR = "10.96.0.0/16"
# Fake nodes kwok keeps Ready; sized so the platform's requests fit with room for a rollout.
NODES = [("kwok-node-0", "32", "128Gi"), ("kwok-node-1", "32", "128Gi")]


def kubectl(*args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([binary("kubectl"), f"--kubeconfig={KUBECONFIG}", *args], input=stdin, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise SystemExit(f"kubectl {' '.join(args[:3])} failed: {result.stderr.strip()}")
    return result


def api_resources(listing: str) -> set[tuple[str, str, bool]]:
    """(apiVersion, kind, namespaced) of each line of `kubectl api-resources -o wide --no-headers`.

    Columns: NAME [SHORTNAMES] APIVERSION NAMESPACED KIND VERBS...; SHORTNAMES may be empty.
    """
    found = set()
    for line in listing.splitlines():
        fields = line.split()
        for i in range(1, len(fields) - 2):
            if fields[i + 1] in ("true", "false"):
                found.add((fields[i], fields[i + 2], fields[i + 1] == "true"))
                break
    return found


def api_server_url(state: State) -> str:
    return f"https://127.0.0.1:{state.ports['apiserver']}"


def _ready(state: State) -> bool:
    """GET /readyz with the admin token, verifying the cluster's CA."""
    context = ssl.create_default_context(cafile=str(STATE_DIR / "pki" / "ca.crt"))
    request = urllib.request.Request(
        f"{api_server_url(state)}/readyz", headers={"Authorization": f"Bearer {pki.admin_token(STATE_DIR / 'pki')}"}
    )
    with urllib.request.urlopen(request, timeout=2, context=context) as response:
        return response.status == 200


def write_kubeconfig(state: State) -> None:
    ca = (STATE_DIR / "pki" / "ca.crt").resolve()
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "polyp-local",
        "clusters": [{"name": "polyp-local", "cluster": {"server": api_server_url(state), "certificate-authority": str(ca)}}],
        "users": [{"name": "polyp-admin", "user": {"token": pki.admin_token(STATE_DIR / "pki")}}],
        "contexts": [{"name": "polyp-local", "context": {"cluster": "polyp-local", "user": "polyp-admin"}}],
    }
    KUBECONFIG.write_text(json.dumps(config, indent=2))  # JSON is YAML; kubectl reads it
    KUBECONFIG.chmod(0o600)


def _kwok_config() -> Path:
    """kwok's stages for nodes, pods and volumes: upstream's, copied from its module at build; volumes in VOLUMES_DIR."""
    path = STATE_DIR / "kwok-stages.yaml"
    stages = "\n---\n".join(p.read_text() for p in sorted((SHARE / "kwok-stages").glob("*.yaml")))
    if _UPSTREAM_VOLUMES_DIR not in stages:
        raise SystemExit(f"kwok's volume stages no longer use {_UPSTREAM_VOLUMES_DIR}: update control_plane.py")
    path.write_text(stages.replace(_UPSTREAM_VOLUMES_DIR, str(VOLUMES_DIR.resolve())))
    return path


def _nodes_and_storage() -> None:
    nodes = [
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
                "labels": {
                    "type": "kwok",
                    "kubernetes.io/hostname": name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                },
            },
            "spec": {},
            "status": {
                "allocatable": {"cpu": cpu, "memory": memory, "pods": "250"},
                "capacity": {"cpu": cpu, "memory": memory, "pods": "250"},
            },
        }
        for name, cpu, memory in NODES
    ]
    kubectl("apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": nodes}))
    kubectl("apply", "-f", str(SHARE / "kwok-storage-class.yaml"))


def up() -> State:
    """Start what is not running; reuse what is. Returns the state with every port."""
    state = State.load()
    pki.ensure_pki(STATE_DIR / "pki")
    etcd, peer, api = state.port("etcd"), state.port("etcd-peer"), state.port("apiserver")
    cm, scheduler, kwok = state.port("controller-manager"), state.port("scheduler"), state.port("kwok")
    p = STATE_DIR / "pki"
    start(
        state,
        "etcd",
        [
            binary("etcd"),
            "--name=polyp",
            f"--data-dir={STATE_DIR / 'etcd'}",
            f"--listen-client-urls=http://127.0.0.1:{etcd}",
            f"--advertise-client-urls=http://127.0.0.1:{etcd}",
            f"--listen-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-cluster=polyp=http://127.0.0.1:{peer}",
            "--quota-backend-bytes=4294967296",
        ],
    )
    start(
        state,
        "kube-apiserver",
        [
            binary("kube-apiserver"),
            f"--etcd-servers=http://127.0.0.1:{etcd}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={api}",
            f"--tls-cert-file={p / 'apiserver.crt'}",
            f"--tls-private-key-file={p / 'apiserver.key'}",
            f"--client-ca-file={p / 'ca.crt'}",
            f"--token-auth-file={p / 'tokens.csv'}",
            "--authorization-mode=RBAC",
            "--allow-privileged=true",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={p / 'sa.pub'}",
            f"--service-account-signing-key-file={p / 'sa.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            # No kubelet or proxy here: loopback Endpoints for `kubernetes` would mislead every client.
            "--endpoint-reconciler-type=none",
            "--profiling=false",
            # Operators' admission webhooks point at pods kwok only pretends to run: their configurations
            # are stored (Argo CD syncs and checks them) but this API server never calls them.
            "--disable-admission-plugins=MutatingAdmissionWebhook,ValidatingAdmissionWebhook",
            # In-process CEL policies need no pod: placement.py sends pods to the real node with one.
            "--feature-gates=MutatingAdmissionPolicy=true",
            "--runtime-config=admissionregistration.k8s.io/v1beta1=true",
            # The real node's kubelet (logs, exec, port-forward) trusts this client certificate.
            f"--kubelet-client-certificate={p / 'apiserver-kubelet-client.crt'}",
            f"--kubelet-client-key={p / 'apiserver-kubelet-client.key'}",
            "--kubelet-preferred-address-types=InternalIP",
        ],
    )
    write_kubeconfig(state)

    def api_server_ready() -> bool:
        check_alive(state, "etcd", "etcd")
        check_alive(state, "kube-apiserver", "kube-apiserver")
        return _ready(state)

    wait_until(api_server_ready, 120, "kube-apiserver")
    start(
        state,
        "kube-controller-manager",
        [
            binary("kube-controller-manager"),
            f"--kubeconfig={KUBECONFIG}",
            f"--authentication-kubeconfig={KUBECONFIG}",
            f"--authorization-kubeconfig={KUBECONFIG}",
            "--bind-address=127.0.0.1",
            f"--secure-port={cm}",
            "--leader-elect=false",
            f"--service-account-private-key-file={p / 'sa.key'}",
            f"--root-ca-file={p / 'ca.crt'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--use-service-account-credentials=false",
            "--profiling=false",
        ],
    )
    start(
        state,
        "kube-scheduler",
        [
            binary("kube-scheduler"),
            f"--kubeconfig={KUBECONFIG}",
            f"--authentication-kubeconfig={KUBECONFIG}",
            f"--authorization-kubeconfig={KUBECONFIG}",
            "--bind-address=127.0.0.1",
            f"--secure-port={scheduler}",
            "--leader-elect=false",
            "--profiling=false",
        ],
    )
    start(
        state,
        "kwok",
        [
            binary("kwok"),
            f"--kubeconfig={KUBECONFIG}",
            f"--config={_kwok_config()}",
            "--manage-all-nodes=false",
            "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
            f"--server-address=127.0.0.1:{kwok}",
            "--cidr=10.244.0.0/16",
            "--node-ip=10.0.0.1",
            # Lease heartbeats keep the fake nodes Ready (the status heartbeat stage runs every ~10 min).
            "--node-lease-duration-seconds=40",
        ],
    )
    # A second kwok writes operator-owned status; it starts once the platform has installed those CRDs.
    start(
        state,
        "kwok-operators",
        [
            sys.executable,
            "-m",
            "polyp_dev.cluster.kwok_operators",
            f"--kubeconfig={KUBECONFIG}",
            f"--port={state.port('kwok-operators')}",
        ],
        match="kwok",
    )
    _nodes_and_storage()
    wait_until(
        lambda: kubectl("wait", "--for=condition=Ready", "node", "--all", "--timeout=5s", check=False).returncode == 0,
        60,
        "kwok nodes",
    )
    for name in ("kube-controller-manager", "kube-scheduler", "kwok"):
        check_alive(state, name, name)
    return state
