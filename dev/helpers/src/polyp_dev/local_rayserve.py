"""Ray Serve serving a model repository, in a child process on loopback (tests, the benchmark, make up)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

from .local_ray import head_environment
from .net import ServerDidNotStart, free_port, stop_process, wait_until


class LocalRayServe:
    """`python -m polyp_rayserve`: its own local Ray unless `address` names a running one."""

    def __init__(
        self,
        repo: str | Path,
        model: str,
        version: int | None = None,
        address: str | None = None,
        num_cpus: int | None = None,
        replicas: int = 1,
        log: Path | None = None,
    ):
        self.repo, self.model, self.version, self.address = str(repo), model, version, address
        self.num_cpus, self.replicas, self.log = num_cpus, replicas, log
        self.port = free_port()
        from polyp_inference.rayserve import deployed_url

        self.url = deployed_url(self.port)
        self._proc: subprocess.Popen | None = None

    def _routes(self) -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/routes", timeout=2) as response:
            return json.loads(response.read())

    def start(self, timeout_s: float = 240) -> LocalRayServe:
        args = [
            sys.executable,
            "-m",
            "polyp_rayserve",
            "--repo",
            self.repo,
            "--model",
            self.model,
            "--port",
            str(self.port),
            "--replicas",
            str(self.replicas),
        ]
        for flag, value in (("--version", self.version), ("--address", self.address), ("--num-cpus", self.num_cpus)):
            if value is not None:
                args += [flag, str(value)]
        out = open(self.log, "a") if self.log else subprocess.DEVNULL  # noqa: SIM115 - lives as long as the server
        self._proc = subprocess.Popen(
            args,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**head_environment(), "RAY_USAGE_STATS_ENABLED": "0"},
        )
        try:  # the proxy lists the route once the application is deployed
            wait_until(lambda: bool(self._routes()), self._proc, timeout_s, "Ray Serve", self.url)
        except ServerDidNotStart:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        stop_process(self._proc, timeout_s=60)  # SIGTERM: Serve and the local Ray shut down
        if self._proc and not self.address:
            with contextlib.suppress(ProcessLookupError):  # anything of its local Ray still alive
                os.killpg(self._proc.pid, signal.SIGKILL)

    def __enter__(self) -> LocalRayServe:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
