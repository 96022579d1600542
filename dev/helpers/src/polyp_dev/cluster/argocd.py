"""The real Argo CD (application-controller, repo-server, their Redis) as processes against the local cluster.

They run in a private network namespace with only loopback: the application-controller binds its
metrics server to 0.0.0.0 and that must not reach the machine's network. The relay makes the API
server and the chart mirror visible inside at the same loopback ports, so the kubeconfig and the
chart mirror URL mean the same thing on both sides. Root (as in CI) uses `unshare --net`; another
user gets a user namespace as well.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

from .control_plane import KUBECONFIG, kubectl
from .processes import SHARE, STATE_DIR, TOOLS_BIN, State, binary, check_alive, is_running, start, wait_until

ARGOCD_NAMESPACE = "argocd"
REPO_SERVER_PORT, REDIS_PORT, CONTROLLER_METRICS_PORT = 8081, 6379, 8082
# Argo CD polls git every RECONCILE (argocd-cm timeout.reconciliation, 180 s by default; a push webhook
# makes it immediate in a real install) plus up to 60 s of jitter; the repo-server caches a branch's
# commit as long. Short here, so that a commit reaches the cluster while a test waits.
RECONCILE = "10s"


def _in_netns(state: State, args: list[str]) -> list[str]:
    """args, run in the namespace of the `netns` process (and its user namespace, for a non-root user)."""
    ns = f"/proc/{state.pids['netns']}/ns"
    user = [] if os.geteuid() == 0 else [f"--user={ns}/user", "--preserve-credentials"]
    return ["nsenter", f"--net={ns}/net", *user, "--", *args]


def _start_netns(state: State) -> None:
    if is_running(state.pids.get("netns"), "unshare"):
        return
    isolate = ["--net"] if os.geteuid() == 0 else ["--user", "--map-root-user", "--net"]
    start(state, "netns", ["unshare", *isolate, "--fork", "--", "sleep", "infinity"])
    wait_until(
        lambda: os.readlink(f"/proc/{state.pids['netns']}/ns/net") != os.readlink("/proc/self/ns/net"), 10, "network namespace"
    )
    subprocess.run(_in_netns(state, [sys.executable, "-m", "polyp_dev.cluster.relay", "--loopback-up"]), check=True)


def _apply_crds() -> None:
    """Argo CD's CRDs of the controller's version (the chart's are older; install.sh --target local skips them)."""
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(SHARE / "argocd" / "crds"))
    # Right after the apply a CRD has no status yet, and `kubectl wait` fails instead of waiting.
    wait_until(
        lambda: (
            kubectl(
                "wait",
                "--for=condition=Established",
                "crd",
                "applications.argoproj.io",
                "appprojects.argoproj.io",
                "--timeout=10s",
                check=False,
            ).returncode
            == 0
        ),
        60,
        "Argo CD CRDs",
    )


def up(state: State) -> None:
    """Start Argo CD against the cluster; needs the argocd namespace and its ConfigMaps (install.sh --target local)."""
    _apply_crds()
    _start_netns(state)
    start(
        state,
        "relay",
        [
            sys.executable,
            "-m",
            "polyp_dev.cluster.relay",
            "--pid",
            str(state.pids["netns"]),
            str(state.ports["apiserver"]),
            str(state.ports["chart-mirror"]),
        ],
        match="polyp_dev.cluster.relay",
    )
    start(
        state,
        "argocd-redis",
        _in_netns(state, ["redis-server", "--bind", "127.0.0.1", "--port", str(REDIS_PORT), "--save", "", "--appendonly", "no"]),
        match="redis-server",
    )
    home = STATE_DIR / "argocd-home"
    home.mkdir(parents=True, exist_ok=True)
    env = {
        # git-verify-wrapper.sh (the repo-server always execs it), pinned helm, then git.
        "PATH": os.pathsep.join([str(SHARE / "argocd" / "bin"), str(TOOLS_BIN), "/usr/local/bin", "/usr/bin", "/bin"]),
        "HOME": str(home),
        "ARGOCD_GPG_ENABLED": "false",
        # https://kubernetes.default.svc, the platform's destination, means the kubeconfig's cluster.
        "ARGOCD_FAKE_IN_CLUSTER": "true",
        "KUBECONFIG": str(KUBECONFIG),
        "ARGOCD_RECONCILIATION_TIMEOUT": RECONCILE,
        "ARGOCD_RECONCILIATION_JITTER": "0s",
    }
    start(
        state,
        "argocd-repo-server",
        _in_netns(
            state,
            [
                binary("argocd"),
                "--address",
                "127.0.0.1",
                "--port",
                str(REPO_SERVER_PORT),
                "--metrics-address",
                "127.0.0.1",
                "--disable-tls",
                "--client-ca-path=",
                "--redis",
                f"127.0.0.1:{REDIS_PORT}",
            ],
        ),
        env={**env, "ARGOCD_BINARY_NAME": "argocd-repo-server"},
        match="argocd",
    )
    start(
        state,
        "argocd-application-controller",
        _in_netns(
            state,
            [
                binary("argocd"),
                f"--kubeconfig={KUBECONFIG}",
                "--namespace",
                ARGOCD_NAMESPACE,
                "--repo-server",
                f"127.0.0.1:{REPO_SERVER_PORT}",
                "--repo-server-plaintext",
                "--redis",
                f"127.0.0.1:{REDIS_PORT}",
                "--metrics-port",
                str(CONTROLLER_METRICS_PORT),
                "--status-processors",
                "10",
                "--operation-processors",
                "5",
            ],
        ),
        env={**env, "ARGOCD_BINARY_NAME": "argocd-application-controller"},
        match="argocd",
    )
    time.sleep(2)
    for name in ("relay", "argocd-redis", "argocd-repo-server", "argocd-application-controller"):
        check_alive(state, name, name)
