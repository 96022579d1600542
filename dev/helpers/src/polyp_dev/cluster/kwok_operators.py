"""Run kwok with the operator-status stages once their CRDs exist, and again if it exits.

dev/local-cluster/operator-stages.yaml makes kwok write the status cert-manager, CloudNativePG,
KServe, KubeRay and the Prometheus Operator would write. kwok exits while a stage's resource type
is unknown to the API server (or listed but not yet in its OpenAPI document), and those CRDs arrive
only as Argo CD syncs the platform's early waves; so this waits for them and restarts kwok until it stays.
An operator that runs for real on the real node (its image is loaded there) writes its own status: its stages
are left out.

    python -m polyp_dev.cluster.kwok_operators --kubeconfig FILE --port PORT
"""

from __future__ import annotations

import argparse
import subprocess
import time

import yaml

from . import images
from .control_plane import api_resources
from .node import CONTAINERD_SOCKET
from .processes import INSTALL_ROOT, STATE_DIR, binary

OPERATOR_STAGES = INSTALL_ROOT / "dev" / "local-cluster" / "operator-stages.yaml"
SIMULATED_STAGES = STATE_DIR / "operator-stages.yaml"
REAL_OPERATOR_IMAGE = "polyp.dev/real-operator-image"


def simulated_stages(real_images: set[str]) -> list[dict]:
    """The stages of every operator that does not run for real."""
    stages = [s for s in yaml.safe_load_all(OPERATOR_STAGES.read_text()) if s]
    return [s for s in stages if s["metadata"].get("annotations", {}).get(REAL_OPERATOR_IMAGE) not in real_images]


def _real_node_images() -> set[str]:
    """The images loaded on the real node; none when it does not run."""
    try:
        return set(images.loaded()) if CONTAINERD_SOCKET.exists() else set()
    except SystemExit:  # its containerd has stopped
        return set()


def needed_resources(stages: list[dict]) -> set[tuple[str, str]]:
    """(group/version, kind) of every stage's resource."""
    return {(s["spec"]["resourceRef"]["apiGroup"], s["spec"]["resourceRef"]["kind"]) for s in stages}


def served(kubeconfig: str) -> set[tuple[str, str]]:
    # kubectl lists what it could discover even when some group fails.
    out = subprocess.run(
        [binary("kubectl"), f"--kubeconfig={kubeconfig}", "api-resources", "-o", "wide", "--no-headers"],
        capture_output=True,
        text=True,
    ).stdout
    return {(api_version, kind) for api_version, kind, _ in api_resources(out)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    needed = needed_resources(simulated_stages(set()))
    while True:
        while missing := needed - served(args.kubeconfig):
            print(f"waiting for CRDs: {', '.join(sorted(kind for _, kind in missing))}", flush=True)
            time.sleep(3)
        # Read now, not when this process starts: `polyp-cluster up` loads the operators' images after that.
        SIMULATED_STAGES.write_text(yaml.safe_dump_all(simulated_stages(_real_node_images())))
        print("all CRDs served: starting kwok with the operator-status stages", flush=True)
        # Same process group: stopping the cluster stops both.
        code = subprocess.call(
            [
                binary("kwok"),
                f"--kubeconfig={args.kubeconfig}",
                f"--config={SIMULATED_STAGES}",
                # Nodes and pods are the other kwok's: this one manages no node.
                "--manage-all-nodes=false",
                "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=none",
                f"--server-address=127.0.0.1:{args.port}",
            ]
        )
        print(f"kwok exited with {code}; starting it again", flush=True)
        time.sleep(3)


if __name__ == "__main__":
    main()
