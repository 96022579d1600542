"""polyp-cluster: a local Kubernetes control plane with kwok nodes, and the real Argo CD on it.

polyp-cluster up        control plane, kwok, the real node, its DNS and upstream images (as root), chart mirror (idempotent)
polyp-cluster load A..  import OCI image archives into the real node; their pods then run there for real
polyp-cluster argocd    the real Argo CD processes (after install.sh --target local applied its config)
polyp-cluster env       shell lines: KUBECONFIG, POLYP_CHART_MIRROR
polyp-cluster status    what runs
polyp-cluster down      stop everything (--purge: forget the cluster's data too)
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from . import argocd, chart_mirror, control_plane, dns, images, node, placement
from .processes import STATE_DIR, State, is_running, stop_all


def _env(state: State) -> str:
    return (
        f"export KUBECONFIG={control_plane.KUBECONFIG}\n"
        f"export POLYP_CHART_MIRROR=http://127.0.0.1:{state.ports['chart-mirror']}\n"
    )


def _up(args: argparse.Namespace) -> int:
    began = time.monotonic()
    state = control_plane.up()
    why_not = "skipped (--no-real-node)" if args.no_real_node else node.available()
    if why_not is None:
        node.up(state)
        images.ensure_upstream_images()  # loaded before dns.up, whose placement update then covers them too
        dns.up(state)
    mirror = chart_mirror.up(state)
    real = f"real node {node.NODE_NAME} ({node.node_ip(state)})" if why_not is None else f"no real node: {why_not}"
    print(
        f"local cluster ready in {time.monotonic() - began:.1f} s: API server {control_plane.api_server_url(state)}, "
        f"{len(control_plane.NODES)} kwok nodes, {real}, chart mirror {mirror}"
    )
    print("use it:\n  " + _env(state).replace("\n", "\n  ").rstrip())
    print("  kubectl get nodes\nthen: bootstrap/install.sh --target local --env dev   (Argo CD syncs this checkout)")
    return 0


def _load(args: argparse.Namespace) -> int:
    state = State.load()
    if not is_running(state.pids.get("kubelet"), "kubelet"):
        raise SystemExit("no real node runs: `polyp-cluster up` as root starts one")
    for archive in args.archives:
        print(f"{archive}: loaded {', '.join(images.load(archive)) or 'nothing new'}")
    placement.update(images.platform_images())
    return 0


def _argocd(_args: argparse.Namespace) -> int:
    argocd.up(State.load())
    print(f"Argo CD application-controller and repo-server running (logs in {STATE_DIR / 'logs'})")
    return 0


def _print_env(_args: argparse.Namespace) -> int:
    state = State.load()
    if "apiserver" not in state.ports:
        raise SystemExit("no local cluster: run `make cluster`")
    print(_env(state), end="")
    return 0


def _status(_args: argparse.Namespace) -> int:
    state = State.load()
    alive = {name: is_running(pid, "") for name, pid in state.pids.items()}  # "": any command line
    for name, pid in state.pids.items():
        print(f"{name:32} {'running' if alive[name] else 'stopped'} (pid {pid})")
    return 0 if alive and all(alive.values()) else 1


def _down(args: argparse.Namespace) -> int:
    state = State.load()
    node.down(state)
    stopped = stop_all(state)
    node.clean_up()
    print(f"stopped: {', '.join(stopped) or 'nothing was running'}")
    if args.purge and STATE_DIR.exists():
        shutil.rmtree(STATE_DIR)
        print(f"removed {STATE_DIR}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="polyp-cluster", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the control plane, kwok, the real node and the chart mirror")
    up.add_argument("--no-real-node", action="store_true", help="kwok nodes only (no containerd, kubelet, kube-proxy)")
    up.set_defaults(func=_up)
    load = sub.add_parser("load", help="import OCI image archives (make images) into the real node's containerd")
    load.add_argument("archives", nargs="+", type=Path)
    load.set_defaults(func=_load)
    sub.add_parser("argocd", help="start the real Argo CD against the cluster").set_defaults(func=_argocd)
    sub.add_parser("env", help="print KUBECONFIG and POLYP_CHART_MIRROR as shell exports").set_defaults(func=_print_env)
    sub.add_parser("status", help="which processes run").set_defaults(func=_status)
    down = sub.add_parser("down", help="stop every process")
    down.add_argument("--purge", action="store_true", help="also delete the cluster's state (etcd data, certificates)")
    down.set_defaults(func=_down)
    args = parser.parse_args(argv)
    return args.func(args)
