"""Servers started on loopback by tests, benchmarks and make up: a free port, waiting until one answers, stopping it."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerDidNotStart(RuntimeError):
    pass


def wait_until(ready: Callable[[], bool], proc: subprocess.Popen, timeout_s: float, what: str, where: str) -> None:
    """Poll `ready()` until it holds; ServerDidNotStart if the process exits or the time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerDidNotStart(f"{what} exited with {proc.returncode}")
        try:
            if ready():
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise ServerDidNotStart(f"{what} did not answer on {where} within {timeout_s} s")


def wait_for_http(url: str, proc: subprocess.Popen, timeout_s: float, what: str) -> None:
    """Return once GET url answers 200; ServerDidNotStart if the process exits or the time runs out."""

    def ready() -> bool:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200

    wait_until(ready, proc, timeout_s, what, url)


def wait_for_port(port: int, proc: subprocess.Popen, timeout_s: float, what: str) -> None:
    """Return once 127.0.0.1:port accepts a connection; ServerDidNotStart if the process exits or the time runs out."""

    def ready() -> bool:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True

    wait_until(ready, proc, timeout_s, what, f"port {port}")


def stop_process(proc: subprocess.Popen | None, timeout_s: float = 30) -> None:
    """SIGTERM, then SIGKILL if it has not exited within timeout_s."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
