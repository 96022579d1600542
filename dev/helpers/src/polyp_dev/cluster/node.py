"""A real node beside the kwok nodes: containerd + runc, the kubelet, kube-proxy and kube-router (NetworkPolicies), in a
network namespace of its own.

Layout (root only: containerd, runc and kube-proxy's iptables need it):

    host netns                                  node netns (held by `unshare --net ... sleep`)
    127.0.0.1:<apiserver>  <-- relay ---------  127.0.0.1:<apiserver>   kubelet, kube-proxy, containerd
    polyp-n<N> 10.250.<N>.1/30  <== veth ==>   eth0 10.250.<N>.2/30     (the node's InternalIP)
                                               cni0 10.245.<N>.1/24     pods (bridge + host-local + portmap)

The API server reaches the kubelet (logs, exec, port-forward) over the veth; nothing else on the host is
routed into the namespace, so the pods reach no network but each other, Services and the node. N is the
first free slot, so two local clusters can run side by side (the tests do).

The node is registered with the taint REAL_NODE_TAINT: nothing lands on it unless it is sent there.
placement.py sends the pods whose images are loaded into its containerd.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from .control_plane import KUBECONFIG, SERVICE_CIDR, VOLUMES_DIR, kubectl
from .processes import STATE_DIR, State, binary, check_alive, is_running, start, wait_until

NODE_NAME = "polyp-real-node"
REAL_NODE_LABEL = "polyp.dev/real-node"
# NoExecute, not NoSchedule: DaemonSets commonly tolerate every NoSchedule taint (kube-prometheus-stack's
# node-exporter does), and their pods would land here without an image to run.
REAL_NODE_TAINT = {"key": REAL_NODE_LABEL, "value": "true", "effect": "NoExecute"}
CLUSTER_DNS = "10.96.0.10"
# containerd's sandbox ("pause") image: built here from Kubernetes' own pause.c (images.py).
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"
NODE_DIR = STATE_DIR / "node"  # configurations, containerd's images and state, CNI leases
# Unix socket paths hold ~104 bytes, and a state dir under pytest's tmp (the tests) leaves no room: the sockets
# and the kubelet's root (it makes sockets below it) go to short folders named after the state dir.
_SHORT = hashlib.sha256(str(STATE_DIR.resolve()).encode()).hexdigest()[:12]
RUN_DIR = Path("/run/polyp-node") / _SHORT
KUBELET_DIR = Path("/var/lib/polyp-node") / _SHORT
# Not the default /var/log/pods: a kubelet deletes the folders there of pods it does not know, so two clusters on
# one machine (or a killed one's leftover kubelet) delete each other's logs (seen in CI: the tests' gitops-live
# cluster, still up, removed a finished real-node pod's log folder).
POD_LOGS_DIR = NODE_DIR / "pod-logs"
CONTAINERD_SOCKET = RUN_DIR / "containerd.sock"
CNI_BIN_DIR = "/usr/lib/cni"  # Debian containernetworking-plugins


def available() -> str | None:
    """Why a real node cannot run here, or None."""
    if os.geteuid() != 0:
        return "a real node needs root (containerd, runc, iptables)"
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    for tool in ("containerd", "runc", "iptables", "ipset", "ip", "nsenter"):
        if not shutil.which(tool, path=search):
            return f"{tool} is missing (make system-packages installs it)"
    if not Path(CNI_BIN_DIR, "bridge").exists():
        return f"{CNI_BIN_DIR}/bridge is missing (Debian containernetworking-plugins)"
    return None


def slot(state: State) -> int:
    """This cluster's N: the first 10.250.N.0/30 no host interface uses."""
    if "node-slot" not in state.ports:
        used = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
        state.ports["node-slot"] = next(n for n in range(256) if f" polyp-n{n}@" not in used and f" polyp-n{n}:" not in used)
        state.save()
    return state.ports["node-slot"]


def node_ip(state: State) -> str:
    return f"10.250.{slot(state)}.2"


def pod_cidr(state: State) -> str:
    return f"10.245.{slot(state)}.0/24"


def in_node(state: State, args: list[str]) -> list[str]:
    """args, run in the node's network namespace (the host's mounts, so containerd's files are where it says)."""
    return ["nsenter", f"--net=/proc/{state.pids['node-netns']}/ns/net", "--", *args]


def _run(*args: str) -> None:
    result = subprocess.run(args, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(args)}: {result.stderr.strip()}")


def _network(state: State) -> None:
    """The namespace, its veth to the host and the sysctls the bridge and kube-proxy need."""
    if is_running(state.pids.get("node-netns"), "unshare"):
        return
    start(state, "node-netns", ["unshare", "--net", "--fork", "--", "sleep", "infinity"])
    wait_until(
        lambda: os.readlink(f"/proc/{state.pids['node-netns']}/ns/net") != os.readlink("/proc/self/ns/net"), 10, "node netns"
    )
    n, pid = slot(state), str(state.pids["node-netns"])
    host_if = f"polyp-n{n}"
    _run("ip", "link", "add", host_if, "type", "veth", "peer", "name", "eth0", "netns", pid)
    _run("ip", "addr", "add", f"10.250.{n}.1/30", "dev", host_if)
    _run("ip", "link", "set", host_if, "up")
    for args in (
        ["ip", "link", "set", "lo", "up"],
        ["ip", "addr", "add", f"10.250.{n}.2/30", "dev", "eth0"],
        ["ip", "link", "set", "eth0", "up"],
        # Pods reach Services through kube-proxy's NAT on the bridge. No default route: nothing beyond the node.
        # The node itself needs a route to the Service range for its own connections to reach kube-proxy's NAT.
        ["sysctl", "-qw", "net.ipv4.ip_forward=1"],
        ["ip", "route", "add", SERVICE_CIDR, "dev", "eth0"],
    ):
        _run(*in_node(state, args))
    # Bridged pod-to-pod traffic must pass iptables, or a pod's reply to a Service's NAT goes around it.
    bridge_nf = Path("/proc/sys/net/bridge/bridge-nf-call-iptables")
    if bridge_nf.exists() or subprocess.run(["modprobe", "br_netfilter"], capture_output=True).returncode == 0:
        _run(*in_node(state, ["sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1"]))


def _write(path: Path, text: str) -> None:
    """Write only a change: kube-proxy exits when its configuration file is rewritten (a second `up` must not)."""
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def _containerd_config(state: State) -> Path:
    base = NODE_DIR / "containerd"
    (NODE_DIR / "cni" / "net.d").mkdir(parents=True, exist_ok=True)
    conflist = {
        "cniVersion": "0.4.0",
        "name": "polyp-node",
        "plugins": [
            {
                "type": "bridge",
                "bridge": "cni0",
                "isGateway": True,
                "ipMasq": True,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": pod_cidr(state)}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(NODE_DIR / "cni" / "ipam"),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }
    _write(NODE_DIR / "cni" / "net.d" / "10-polyp.conflist", json.dumps(conflist, indent=2))
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    config = f"""version = 2
root = "{base / "root"}"
state = "{base / "state"}"
[grpc]
  address = "{CONTAINERD_SOCKET}"
[ttrpc]
  address = "{CONTAINERD_SOCKET}.ttrpc"
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{base / "opt"}"
[{cri}]
  sandbox_image = "{PAUSE_IMAGE}"
  # This VM lacks CAP_SYS_RESOURCE: without these every sandbox fails ("can't get final child's PID").
  restrict_oom_score_adj = true
  # Pods' network namespaces under the state dir, so that down() finds and unmounts them.
  netns_mounts_under_state_dir = true
  disable_apparmor = true
  enable_selinux = false
[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"
[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
[{cri}.cni]
  bin_dir = "{CNI_BIN_DIR}"
  conf_dir = "{NODE_DIR / "cni" / "net.d"}"
"""
    path = base / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    _write(path, config)
    return path


def _kubelet_config(state: State) -> Path:
    p = STATE_DIR / "pki"
    _write(NODE_DIR / "resolv.conf", "# the node resolves nothing; pods use the cluster DNS\n")
    config = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": node_ip(state),
        "port": state.port("kubelet"),
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": state.port("kubelet-healthz"),
        "containerRuntimeEndpoint": f"unix://{CONTAINERD_SOCKET}",
        # Only the API server (its kubelet-client certificate, signed by the cluster's CA) may call the kubelet.
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": False},
            "x509": {"clientCAFile": str(p / "ca.crt")},
        },
        "authorization": {"mode": "AlwaysAllow"},
        "clusterDNS": [CLUSTER_DNS],
        "clusterDomain": "cluster.local",
        "resolvConf": str(NODE_DIR / "resolv.conf"),
        # cgroup v1 in hybrid mode, no systemd, a VM without swap accounting or CAP_SYS_RESOURCE.
        "cgroupDriver": "cgroupfs",
        "cgroupsPerQOS": False,
        "enforceNodeAllocatable": [],
        "failSwapOn": False,
        "registerWithTaints": [REAL_NODE_TAINT],
        # Images are built here and cannot be pulled again: never collect them, never evict for a full-ish disk.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
        "maxPods": 40,
        "podLogsDir": str(POD_LOGS_DIR),
        "serializeImagePulls": False,
    }
    path = NODE_DIR / "kubelet.json"
    _write(path, json.dumps(config, indent=2))
    return path


def _kube_proxy_config(state: State) -> Path:
    config = {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "iptables",
        "clientConnection": {"kubeconfig": str(KUBECONFIG)},
        "hostnameOverride": NODE_NAME,
        "bindAddress": "127.0.0.1",
        "healthzBindAddress": f"127.0.0.1:{state.port('kube-proxy-healthz')}",
        "metricsBindAddress": f"127.0.0.1:{state.port('kube-proxy-metrics')}",
        "clusterCIDR": pod_cidr(state),
        "nodePortAddresses": ["primary"],
        # The namespace's conntrack table is the kernel's; kube-proxy must not try to resize it.
        "conntrack": {"maxPerCore": 0, "min": 0},
    }
    path = NODE_DIR / "kube-proxy.json"
    _write(path, json.dumps(config, indent=2))
    return path


def _node_ready() -> bool:
    node = kubectl("get", "node", NODE_NAME, "-o", "json", check=False)
    if node.returncode != 0:
        return False
    conditions = json.loads(node.stdout)["status"].get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def up(state: State) -> None:
    """Start the node (idempotent) and wait until it is Ready; the pause image must be loadable (images.py)."""
    from . import images  # images needs node's constants

    for folder in (NODE_DIR, POD_LOGS_DIR, RUN_DIR, KUBELET_DIR):
        folder.mkdir(parents=True, exist_ok=True)
    _network(state)
    start(
        state,
        "node-relay",
        [sys.executable, "-m", "polyp_dev.cluster.relay", "--pid", str(state.pids["node-netns"]), str(state.ports["apiserver"])],
        match="polyp_dev.cluster.relay",
    )
    start(state, "containerd", in_node(state, ["containerd", "--config", str(_containerd_config(state))]), match="containerd")
    wait_until(lambda: CONTAINERD_SOCKET.exists(), 30, "containerd")
    images.ensure_pause_image()
    start(
        state,
        "kubelet",
        in_node(
            state,
            [
                binary("kubelet"),
                f"--config={_kubelet_config(state)}",
                f"--kubeconfig={KUBECONFIG}",
                f"--hostname-override={NODE_NAME}",
                f"--node-ip={node_ip(state)}",
                f"--node-labels={REAL_NODE_LABEL}=true",
                f"--root-dir={KUBELET_DIR}",
                f"--cert-dir={KUBELET_DIR / 'pki'}",
            ],
        ),
        match="kubelet",
    )
    start(
        state,
        "kube-proxy",
        in_node(state, [binary("kube-proxy"), f"--config={_kube_proxy_config(state)}"]),
        match="kube-proxy",
    )

    def ready() -> bool:
        for name in ("containerd", "kubelet", "kube-proxy"):
            check_alive(state, name, name)
        return _node_ready()

    wait_until(ready, 120, f"node {NODE_NAME}", interval_s=1)
    start(
        state,
        "node-volumes",
        [sys.executable, "-m", "polyp_dev.cluster.volumes", f"--kubeconfig={KUBECONFIG}", f"--root={VOLUMES_DIR.resolve()}"],
        match="polyp_dev.cluster.volumes",
    )
    # NetworkPolicies, enforced: kube-router's firewall alone (iptables + ipset); kube-proxy keeps Services. It
    # looks its node up when it starts, so it starts once the node is registered.
    running = state.pids.get("kube-router")
    pid = start(
        state,
        "kube-router",
        in_node(
            state,
            [
                binary("kube-router"),
                f"--kubeconfig={KUBECONFIG}",
                f"--hostname-override={NODE_NAME}",
                "--run-firewall=true",
                "--run-router=false",
                "--run-service-proxy=false",
                "--enable-cni=false",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--health-port=0",
            ],
        ),
        match="kube-router",
    )
    if pid != running:  # just started: it exits within a moment when it cannot find its node
        time.sleep(2)
        check_alive(state, "kube-router", "kube-router")


def down(state: State) -> None:
    """Kill every container of the node (containerd's shims outlive it), then unmount what it mounted.

    The processes themselves (kubelet, containerd, the namespace) are stopped with the rest of the cluster.
    """
    if is_running(state.pids.get("containerd"), "containerd") and CONTAINERD_SOCKET.exists():
        listing = subprocess.run(
            ["ctr", "--address", str(CONTAINERD_SOCKET), "-n", "k8s.io", "tasks", "list"], capture_output=True, text=True
        ).stdout
        for line in listing.splitlines()[1:]:
            fields = line.split()
            if len(fields) >= 2 and fields[1].isdigit():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(fields[1]), signal.SIGKILL)
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                cmdline = (proc / "cmdline").read_bytes()
                if b"containerd-shim" in cmdline and str(CONTAINERD_SOCKET).encode() in cmdline:
                    os.kill(int(proc.name), signal.SIGKILL)


def clean_up() -> None:
    """After the processes stopped: unmount what the node mounted (secrets' tmpfs, rootfs overlays, pods' netns),
    deepest first, and remove the kubelet's root and the sockets' folder (the next `up` starts them afresh)."""
    folders = [str(folder.resolve()) for folder in (NODE_DIR, KUBELET_DIR, RUN_DIR)]
    mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    # The kubelet bind-mounts its root onto itself (to make it shared): the folder itself counts.
    ours = [m for m in mounts if any(m == folder or m.startswith(folder + "/") for folder in folders)]
    for mount in sorted(ours, key=len, reverse=True):
        subprocess.run(["umount", "-l", mount], capture_output=True)
    for folder in (KUBELET_DIR, RUN_DIR):
        shutil.rmtree(folder, ignore_errors=True)
