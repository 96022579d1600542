"""Fixtures: a real Redis, a real PostgreSQL, the control service as a real server process, settings on
temporary storage."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest
from control_helpers import READ_TOKEN, TOKEN, closed_port_url

from polyp_control.settings import Settings
from polyp_dev.net import ServerDidNotStart, free_port, stop_process, wait_for_http, wait_for_port


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed: `make test` installs it (Debian package redis-server)")
    port = free_port()
    folder = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(folder)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, proc, 60, "redis-server")
    except ServerDidNotStart as exc:
        proc.kill()
        pytest.fail(str(exc))
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(timeout=10)


def _postgres_binary(name: str) -> str:
    """Debian keeps the server's binaries off PATH, under /usr/lib/postgresql/<major>/bin."""
    found = shutil.which(name) or max(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), default=None)
    if found is None:
        pytest.fail("PostgreSQL is not installed: `make test` installs it (Debian package postgresql)")
    return found


@pytest.fixture(scope="session")
def postgres_server():
    """One PostgreSQL server for the session, on loopback, trust auth for its one local user (test data only).

    PostgreSQL refuses to run as root: as root it runs as `nobody`, in a folder of its own outside pytest's
    (root-only) temporary tree."""
    as_user = {"user": "nobody"} if os.geteuid() == 0 else {}
    folder = Path(tempfile.mkdtemp(prefix="polyp-postgres-"))
    if as_user:
        nobody = pwd.getpwnam("nobody")
        os.chown(folder, nobody.pw_uid, nobody.pw_gid)
    subprocess.run(
        [_postgres_binary("initdb"), "-D", str(folder / "data"), "-U", "polyp", "--auth=trust", "--encoding=UTF8", "--no-sync"],
        check=True,
        capture_output=True,
        **as_user,
    )
    port = free_port()
    log = open(folder / "server.log", "w")  # noqa: SIM115 - closed with the server
    proc = subprocess.Popen(
        [
            _postgres_binary("postgres"),
            "-D",
            str(folder / "data"),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-k",
            str(folder),
            "-F",
            "-c",
            "max_connections=200",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        **as_user,
    )
    try:
        wait_for_port(port, proc, 60, "postgres")
    except ServerDidNotStart as exc:
        proc.kill()
        pytest.fail(f"{exc}: {(folder / 'server.log').read_text()[-2000:]}")
    yield f"postgresql+psycopg://polyp@127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=30)
    log.close()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server) -> str:
    """A fresh, empty database on the session's PostgreSQL."""
    import psycopg

    name = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server.replace("postgresql+psycopg", "postgresql") + "/postgres", autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return f"{postgres_server}/{name}"


@pytest.fixture
def settings(tmp_path) -> Settings:
    """Local defaults on temporary files; Ray unreachable unless a test provides one."""
    return Settings(
        api_token=TOKEN,
        api_read_token=READ_TOKEN,
        redis_url=None,
        ray_address=closed_port_url(),
        database_url=f"sqlite:///{tmp_path / 'control.db'}",
        mlflow_tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        model_repo=str(tmp_path / "repo"),
        training_data=str(tmp_path / "data"),
        cors_origins=["http://page.example"],
        watch_interval_s=3600,
        run_poll_interval_s=0.5,
        sse_heartbeat_s=1,
        instance_id="test",
    )


class ControlServer:
    """`polyp-control` in its own process on loopback, configured by environment like the chart does."""

    def __init__(self, env: dict, log: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "API_TOKEN": TOKEN, "API_READ_TOKEN": READ_TOKEN, **env}
        self.log = log

    def start(self, timeout_s: float = 180) -> ControlServer:
        self._out = open(self.log, "a")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "polyp_control.main", "--port", str(self.port)],
            env=self.env,
            stdout=self._out,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for_http(f"{self.url}/healthz", self.proc, timeout_s, "the control service")
        except ServerDidNotStart as exc:
            self.stop()
            raise RuntimeError(f"{exc}: {self.log.read_text()[-3000:]}") from None
        return self

    def stop(self) -> None:
        stop_process(self.proc, timeout_s=20)
        self._out.close()


@pytest.fixture
def control_server(tmp_path):
    started = []

    def start(**env) -> ControlServer:
        base = {
            "DATABASE_URL": f"sqlite:///{tmp_path / 'control.db'}",
            "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
            "RAY_ADDRESS": closed_port_url(),
            "MODEL_REPO": str(tmp_path / "repo"),
            "TRAINING_DATA": str(tmp_path / "data"),
            "RUN_POLL_INTERVAL_S": "0.5",
            "SSE_HEARTBEAT_S": "1",
            "POLYP_HOME": str(tmp_path / "home"),
        }
        server = ControlServer({**base, **env}, tmp_path / f"control-{len(started)}.log").start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
