"""Helpers for servers started on loopback by tests, benchmarks and make up (local Triton, local Ray head)."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerDidNotStart(RuntimeError):
    pass


def wait_for_http(url: str, proc: subprocess.Popen, timeout_s: float, what: str) -> None:
    """Return once GET url answers 200; ServerDidNotStart if the process exits or the time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerDidNotStart(f"{what} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise ServerDidNotStart(f"{what} did not answer on {url} within {timeout_s} s")
