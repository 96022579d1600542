"""A local Ray head with the job-submission API on loopback (make up, tests); stopping it stops its processes."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from .net import ServerDidNotStart, free_port, stop_process, wait_for_http

# Ray's defaults give its dashboard modules 30 s to come up; a loaded 2-core machine needs longer.
SLOW_MACHINE_TIMEOUTS = {"RAY_DASHBOARD_SUBPROCESS_MODULE_WAIT_READY_TIMEOUT": "180", "RAY_DASHBOARD_STARTUP_TIMEOUT_S": "240"}
# Started under `uv run` (make up, make test), Ray would run every job and worker through
# `uv run --frozen` in an uploaded copy of the working directory: slow, and dead where uv is not
# on the job's PATH (a job stayed PENDING for ever). The head's own interpreter has everything.
NO_UV_WRAPPING = {"RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0"}


def head_environment() -> dict[str, str]:
    """The head's environment, inherited by its jobs: this interpreter's scripts first on PATH.

    A training job runs `polyp-train` through /bin/sh; started from `.venv/bin/pytest` (no activated
    venv) the caller's PATH would not find it.
    """
    scripts = str(Path(sys.executable).parent)
    return {
        **SLOW_MACHINE_TIMEOUTS,
        **os.environ,
        **NO_UV_WRAPPING,
        "PATH": os.pathsep.join([scripts, os.environ.get("PATH", "")]),
    }


class LocalRayHead:
    """`token`: Ray's token authentication (RAY_AUTH_MODE=token), as the cluster's RayCluster runs: the job API,
    the dashboard and the GCS refuse anyone without it. None: open, for tests that need no more."""

    def __init__(
        self, dashboard_port: int = 8265, num_cpus: int | None = None, log: Path | None = None, token: str | None = None
    ):
        self.dashboard_port, self.num_cpus, self.log, self.token = dashboard_port, num_cpus, log, token
        self.address = f"http://127.0.0.1:{dashboard_port}"
        self.gcs_port = free_port()
        self.gcs_address = f"127.0.0.1:{self.gcs_port}"  # what a driver (ray.init) connects to
        self._proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 240, attempts: int = 2) -> LocalRayHead:
        """Start the head; a head that did not come up (a slow machine) is stopped and started once more."""
        for attempt in range(1, attempts + 1):
            try:
                return self._start_once(timeout_s)
            except ServerDidNotStart:
                if attempt == attempts:
                    raise
        raise ValueError(f"attempts must be at least 1, not {attempts}")

    def _start_once(self, timeout_s: float) -> LocalRayHead:
        ray = str(Path(sys.executable).with_name("ray"))
        if not Path(ray).exists():
            ray = shutil.which("ray") or ray
        # Every port explicit: another Ray on this machine (a test's ray.init) must not collide with this one.
        args = [
            ray,
            "start",
            "--head",
            "--block",
            "--node-ip-address=127.0.0.1",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={self.dashboard_port}",
            f"--port={self.gcs_port}",
            "--include-dashboard=true",
            f"--ray-client-server-port={free_port()}",
            f"--dashboard-agent-listen-port={free_port()}",
            f"--dashboard-agent-grpc-port={free_port()}",
            f"--metrics-export-port={free_port()}",
            "--disable-usage-stats",
        ]
        if self.num_cpus:
            args.append(f"--num-cpus={self.num_cpus}")
        out = open(self.log, "a") if self.log else subprocess.DEVNULL  # noqa: SIM115 - lives as long as the head
        # Its own process group: Ctrl-C reaches only us, and stop() can take down every Ray process it spawned.
        auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token} if self.token else {}
        env = {**head_environment(), **auth}
        self._proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env)
        try:  # /api/gcs_healthz answers without the token
            wait_for_http(f"{self.address}/api/gcs_healthz", self._proc, timeout_s, "the Ray head (ray start)")
        except ServerDidNotStart:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        stop_process(self._proc)  # `ray start --block` tears its processes down on SIGTERM
        if self._proc:
            with contextlib.suppress(ProcessLookupError):  # anything of the head's group still alive
                os.killpg(self._proc.pid, signal.SIGKILL)

    def __enter__(self) -> LocalRayHead:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
