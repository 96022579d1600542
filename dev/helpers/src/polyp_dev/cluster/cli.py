"""polyp-cluster: a local Kubernetes control plane with kwok nodes, and the real Argo CD on it.

polyp-cluster up        control plane, kwok, chart mirror (idempotent: reuses what runs)
polyp-cluster argocd    the real Argo CD processes (after install.sh --target local applied its config)
polyp-cluster env       shell lines: KUBECONFIG, POLYP_CHART_MIRROR
polyp-cluster status    what runs
polyp-cluster down      stop everything (--purge: forget the cluster's data too)
"""

from __future__ import annotations

import argparse
import shutil
import time

from . import argocd, chart_mirror, control_plane
from .processes import STATE_DIR, State, is_running, stop_all


def _env(state: State) -> str:
    return (
        f"export KUBECONFIG={control_plane.KUBECONFIG}\n"
        f"export POLYP_CHART_MIRROR=http://127.0.0.1:{state.ports['chart-mirror']}\n"
    )


def _up(_args: argparse.Namespace) -> int:
    began = time.monotonic()
    state = control_plane.up()
    mirror = chart_mirror.up(state)
    print(
        f"local cluster ready in {time.monotonic() - began:.1f} s: API server {control_plane.api_server_url(state)}, "
        f"{len(control_plane.NODES)} kwok nodes, chart mirror {mirror}"
    )
    print("use it:\n  " + _env(state).replace("\n", "\n  ").rstrip())
    print("  kubectl get nodes\nthen: bootstrap/install.sh --target local --env dev   (Argo CD syncs this checkout)")
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
    stopped = stop_all(State.load())
    print(f"stopped: {', '.join(stopped) or 'nothing was running'}")
    if args.purge and STATE_DIR.exists():
        shutil.rmtree(STATE_DIR)
        print(f"removed {STATE_DIR}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="polyp-cluster", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="start the control plane, kwok and the chart mirror").set_defaults(func=_up)
    sub.add_parser("argocd", help="start the real Argo CD against the cluster").set_defaults(func=_argocd)
    sub.add_parser("env", help="print KUBECONFIG and POLYP_CHART_MIRROR as shell exports").set_defaults(func=_print_env)
    sub.add_parser("status", help="which processes run").set_defaults(func=_status)
    down = sub.add_parser("down", help="stop every process")
    down.add_argument("--purge", action="store_true", help="also delete the cluster's state (etcd data, certificates)")
    down.set_defaults(func=_down)
    args = parser.parse_args(argv)
    return args.func(args)
