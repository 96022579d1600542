"""Fixtures: a real Redis, a real PostgreSQL, the control service as a real server process, settings on
temporary storage."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from control_helpers import READ_TOKEN, TOKEN, refusing_ray

from polyp_control.settings import Settings
from polyp_dev.net import ServerDidNotStart, free_port, stop_process, wait_for_http, wait_for_port


class RedisServer:
    """A real redis-server on loopback without persistence; it can be stopped and started again on the same port
    (the fault tests do: what a restart or a failover to an empty replica looks like to a client)."""

    def __init__(self, folder: Path):
        self.binary = shutil.which("redis-server")
        if self.binary is None:
            pytest.fail("redis-server is not installed: `make test` installs it (Debian package redis-server)")
        self.folder, self.port = folder, free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> RedisServer:
        command = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.proc = subprocess.Popen([*command, "--dir", str(self.folder)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for_port(self.port, self.proc, 60, "redis-server")
        except ServerDidNotStart as exc:
            self.proc.kill()
            pytest.fail(str(exc))
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server.url
    server.stop()


@pytest.fixture
def own_redis(tmp_path):
    """A Redis server of the test's own, which it may stop and start."""
    server = RedisServer(tmp_path).start()
    yield server
    server.stop()


def _postgres_binary(name: str) -> str:
    """Debian keeps the server's binaries off PATH, under /usr/lib/postgresql/<major>/bin."""
    found = shutil.which(name) or max(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), default=None)
    if found is None:
        pytest.fail("PostgreSQL is not installed: `make test` installs it (Debian package postgresql)")
    return found


class PostgresServer:
    """A real PostgreSQL server on loopback, trust auth for its one local user (test data only); it can be stopped
    and started again on the same data and port (the fault tests do).

    PostgreSQL refuses to run as root: as root it runs as `nobody`, in a folder of its own outside pytest's
    (root-only) temporary tree."""

    def __init__(self) -> None:
        self.as_user = {"user": "nobody"} if os.geteuid() == 0 else {}
        self.folder = Path(tempfile.mkdtemp(prefix="polyp-postgres-"))
        if self.as_user:
            nobody = pwd.getpwnam("nobody")
            os.chown(self.folder, nobody.pw_uid, nobody.pw_gid)
        subprocess.run(
            [
                _postgres_binary("initdb"),
                "-D",
                str(self.folder / "data"),
                "-U",
                "polyp",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
            **self.as_user,
        )
        self.port = free_port()
        self.url = f"postgresql+psycopg://polyp@127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> PostgresServer:
        log = open(self.folder / "server.log", "a")  # noqa: SIM115 - the server holds it
        command = [_postgres_binary("postgres"), "-D", str(self.folder / "data"), "-h", "127.0.0.1", "-p", str(self.port)]
        self.proc = subprocess.Popen(
            [*command, "-k", str(self.folder), "-F", "-c", "max_connections=200"],
            stdout=log,
            stderr=subprocess.STDOUT,
            **self.as_user,
        )
        log.close()
        try:
            wait_for_port(self.port, self.proc, 60, "postgres")
        except ServerDidNotStart as exc:
            self.proc.kill()
            pytest.fail(f"{exc}: {(self.folder / 'server.log').read_text()[-2000:]}")
        return self

    def stop(self) -> None:
        """A fast shutdown: open sessions are ended, as when the database pod is deleted."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # PostgreSQL's fast shutdown (SIGTERM waits for every client)
            self.proc.wait(timeout=30)

    def create_database(self) -> str:
        import psycopg

        name = f"test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url.replace("postgresql+psycopg", "postgresql") + "/postgres", autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return f"{self.url}/{name}"

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server():
    """One PostgreSQL server for the session."""
    server = PostgresServer().start()
    yield server
    server.remove()


@pytest.fixture
def own_postgres():
    """A PostgreSQL server of the test's own, which it may stop and start."""
    server = PostgresServer().start()
    yield server
    server.remove()


@pytest.fixture
def postgres_url(postgres_server) -> str:
    """A fresh, empty database on the session's PostgreSQL."""
    return postgres_server.create_database()


@pytest.fixture(scope="session")
def ray_refusing_jobs() -> Iterator[str]:
    with refusing_ray() as address:
        yield address


@pytest.fixture
def settings(tmp_path, ray_refusing_jobs) -> Settings:
    """Local defaults on temporary files; a Ray that refuses every job (runs fail at once) unless a test provides one."""
    return Settings(
        api_token=TOKEN,
        api_read_token=READ_TOKEN,
        redis_url=None,
        ray_address=ray_refusing_jobs,
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
def control_server(tmp_path, ray_refusing_jobs):
    started = []

    def start(**env) -> ControlServer:
        base = {
            "DATABASE_URL": f"sqlite:///{tmp_path / 'control.db'}",
            "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
            "RAY_ADDRESS": ray_refusing_jobs,
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
