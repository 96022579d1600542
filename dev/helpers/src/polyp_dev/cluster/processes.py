"""Long-lived processes of the local cluster: started detached, recorded in a state file, found again by a later call."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from polyp_gitops.repo import INSTALL_ROOT
from polyp_gitops.tools import TOOLS_BIN

from ..net import free_port

SHARE = INSTALL_ROOT / ".tools" / "share"
STATE_DIR = Path(os.environ.get("POLYP_CLUSTER_DIR", INSTALL_ROOT / ".tools" / "cluster"))


@dataclass
class State:
    """Ports and process ids of the running cluster, kept in STATE_DIR/state.json."""

    ports: dict[str, int] = field(default_factory=dict)
    pids: dict[str, int] = field(default_factory=dict)

    @classmethod
    def load(cls) -> State:
        path = STATE_DIR / "state.json"
        if not path.exists():
            return cls()
        data = json.loads(path.read_text())
        return cls(ports=data.get("ports", {}), pids=data.get("pids", {}))

    def port(self, name: str) -> int:
        """The loopback port `name` got when the cluster first started; a free one the first time."""
        if name not in self.ports:
            self.ports[name] = free_port()
            self.save()
        return self.ports[name]

    def save(self) -> None:
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        (STATE_DIR / "state.json").write_text(json.dumps({"ports": self.ports, "pids": self.pids}, indent=2))


def binary(name: str) -> str:
    path = TOOLS_BIN / name
    if not path.is_file():
        raise SystemExit(f"{path} is missing: `make cluster` builds it from the pinned Go modules")
    return str(path)


def is_running(pid: int | None, name: str) -> bool:
    """True if pid is alive and is still the process started as `name` (pids are reused)."""
    if not pid:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return any(name.encode() in part for part in cmdline[:3])


def start(state: State, name: str, args: list[str], env: dict[str, str] | None = None, match: str = "") -> int:
    """Start args detached (own session, output to STATE_DIR/logs/name.log) unless `name` already runs.

    match: what the running process's command line shows, where it is not args[0] (nsenter execs its command).
    """
    if is_running(state.pids.get(name), match or Path(args[0]).name):
        return state.pids[name]
    logs = STATE_DIR / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with open(logs / f"{name}.log", "ab") as log:
        proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
    state.pids[name] = proc.pid
    state.save()
    return proc.pid


def check_alive(state: State, name: str, what: str) -> None:
    pid = state.pids.get(name)
    if pid and not Path(f"/proc/{pid}").exists():
        tail = (STATE_DIR / "logs" / f"{name}.log").read_text(errors="replace")[-2000:]
        raise SystemExit(f"{what} exited; last lines of {STATE_DIR / 'logs' / (name + '.log')}:\n{tail}")


def stop_all(state: State, timeout_s: float = 20) -> list[str]:
    """SIGTERM every recorded process group, newest first; SIGKILL what is left after timeout_s."""
    stopped = []
    for name, pid in reversed(list(state.pids.items())):
        try:
            os.killpg(pid, signal.SIGTERM)
            stopped.append(name)
        except (ProcessLookupError, PermissionError):
            pass
    deadline = time.monotonic() + timeout_s
    for pid in state.pids.values():
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            if _is_zombie(pid):
                break
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
    state.pids.clear()
    state.save()
    return stopped


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    except (OSError, IndexError):
        return True


T = TypeVar("T")


def wait_until(check: Callable[[], T], timeout_s: float, what: str, interval_s: float = 0.3) -> T:
    """Poll check() until it returns a truthy value; SystemExit naming `what` when the time runs out."""
    deadline = time.monotonic() + timeout_s
    last_error = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except (OSError, subprocess.SubprocessError) as error:
            last_error = error
        time.sleep(interval_s)
    raise SystemExit(f"{what} not ready within {timeout_s:.0f} s" + (f": {last_error}" if last_error else ""))
