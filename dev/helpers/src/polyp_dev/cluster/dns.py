"""Cluster DNS as a real pod on the real node, and the API server as pods see it.

Pods find the API server as the `kubernetes` Service (10.96.0.1:443). The API server runs on the host's
loopback and writes no endpoints of its own here (--endpoint-reconciler-type=none): a relay listens on the
node's address inside its namespace and forwards to the host, and its address is the Service's endpoint.
It listens on 6443, the API server's port on kind, whatever port the host's API server has: NetworkPolicies
match the endpoint's port, and the platform's admit the API server on 443 and 6443 only
(charts/network-policies, kubernetesApiPorts). CoreDNS (dev/local-cluster/coredns.yaml) is the first pod
that needs it.
"""

from __future__ import annotations

import json
import sys

from polyp_gitops.repo import INSTALL_ROOT

from . import images, placement
from .control_plane import kubectl
from .node import node_ip
from .processes import State, start, wait_until

MANIFEST = INSTALL_ROOT / "dev" / "local-cluster" / "coredns.yaml"
API_SERVER_PORT = 6443  # as pods reach it on kind (the `kubernetes` Service's endpoint port)


def _api_server_endpoint(state: State) -> None:
    address, port = node_ip(state), API_SERVER_PORT
    relay = [sys.executable, "-m", "polyp_dev.cluster.relay", "--pid", str(state.pids["node-netns"]), "--bind", address]
    relay += ["--as-port", str(port), str(state.ports["apiserver"])]
    start(state, "node-api-relay", relay, match="polyp_dev.cluster.relay")
    endpoints = {
        "apiVersion": "v1",
        "kind": "Endpoints",
        # Written here, so the EndpointSlice below is the only slice (no mirrored copy).
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": [{"addresses": [{"ip": address}], "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}],
    }
    endpoint_slice = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"kubernetes.io/service-name": "kubernetes"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [address], "conditions": {"ready": True}}],
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
    }
    kubectl("apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": [endpoints, endpoint_slice]}))


def up(state: State) -> None:
    """The API server's endpoint, then CoreDNS (its image loaded and placed on the real node); waits until it answers."""
    _api_server_endpoint(state)
    images.ensure_binary_image(images.COREDNS)
    placement.update(images.platform_images())  # before its pod is created, or it lands on a kwok node
    kubectl("apply", "-f", str(MANIFEST))
    wait_until(
        lambda: (
            kubectl("-n", "kube-system", "rollout", "status", "deployment/coredns", "--timeout=5s", check=False).returncode == 0
        ),
        180,
        "CoreDNS",
        interval_s=1,
    )
