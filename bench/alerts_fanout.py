"""Alert fan-out: N concurrent SSE clients on the control service, alerts published through Redis.

    uv run python bench/alerts_fanout.py [--clients 100 1000] [--alerts 50] [--interval 0.5] [--burst 200] [--no-pin]

Starts redis-server and one control service process (loopback), connects N EventSource-like
clients to /v1/alerts/stream, then
  1. latency: publishes --alerts alerts --interval apart (default 500 ms); publish->receive latency over every
     (client, alert) delivery, p50/p99 (target: p99 < 100 ms for 1000 clients);
  2. sustained rate: publishes --burst alerts back to back; alerts/s until every client has
     them all (and the deliveries/s that makes).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

from polyp_control.alerts import Alert, RedisBus
from polyp_dev.net import free_port

TOKEN = "bench-token"


def raise_fd_limit() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))


def on_cpu(cpu: int | None):
    """preexec_fn: pin a child to one CPU (None: leave it to the scheduler)."""

    def pin() -> None:
        raise_fd_limit()
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})

    return pin


class Client:
    """An EventSource-like client on a bare asyncio stream: it notes each `data:` line's arrival time and parses
    later, so the measuring side spends as little of the shared CPUs per event as it can."""

    def __init__(self):
        self.lines: list[tuple[float, bytes]] = []
        self.connected = asyncio.Event()

    async def run(self, host: str, port: int):
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(
            f"GET /v1/alerts/stream HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {TOKEN}\r\n"
            "Accept: text/event-stream\r\n\r\n".encode()
        )
        status = await reader.readline()
        if b" 200 " not in status:
            raise RuntimeError(f"stream answered {status!r}")
        self.connected.set()
        try:
            while line := await reader.readline():
                if line.startswith(b"data:"):
                    self.lines.append((time.time(), line))
        finally:
            writer.close()

    @property
    def received(self) -> dict[str, float]:
        """alert message -> publish->receive latency (s)"""
        alerts = ((at, json.loads(line[5:])) for at, line in self.lines)
        return {alert["message"]: at - alert["at"] for at, alert in alerts}

    def count(self) -> int:
        return len(self.lines)


async def wait_for(predicate, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.05)
    return False


async def measure(url: str, redis_url: str, n_clients: int, n_alerts: int, burst: int, interval: float) -> None:
    bus = RedisBus(redis_url)
    clients = [Client() for _ in range(n_clients)]
    host, port = url.removeprefix("http://").split(":")
    tasks = [asyncio.ensure_future(c.run(host, int(port))) for c in clients]
    await asyncio.wait_for(asyncio.gather(*(c.connected.wait() for c in clients)), 120)
    # Every subscription live, and the server past its start-up work (MLflow creates its tables in a thread in
    # the first seconds: deliveries then took up to 130 ms); what is measured is the steady state.
    await asyncio.sleep(6)

    for i in range(n_alerts):
        await bus.publish(Alert(type="bench", message=f"lat-{i}", at=time.time()))
        await asyncio.sleep(interval)
    complete = await wait_for(lambda: all(c.count() >= n_alerts for c in clients), 60)
    received = [c.received for c in clients]
    latencies = np.array([v for r in received for k, v in r.items() if k.startswith("lat-")]) * 1000
    worst = [max(r.get(f"lat-{i}", np.inf) for r in received) * 1000 for i in range(n_alerts)]
    print(f"slowest delivery per alert (ms): {' '.join(f'{w:.0f}' for w in worst)}", flush=True)
    p50, p99 = np.percentile(latencies, 50), np.percentile(latencies, 99)
    print(
        f"{n_clients:5d} clients  one alert every {interval * 1000:.0f} ms, latency over {latencies.size} deliveries: "
        f"p50 {p50:7.1f} ms  p99 {p99:7.1f} ms  max {latencies.max():7.1f} ms"
        f"{'' if complete else '  (INCOMPLETE)'}",
        flush=True,
    )

    started = time.time()
    for i in range(burst):
        await bus.publish(Alert(type="bench", message=f"burst-{i}", at=time.time()))
    published = time.time() - started
    complete = await wait_for(lambda: all(c.count() >= n_alerts + burst for c in clients), 300)
    elapsed = time.time() - started
    delivered = sum(c.count() for c in clients) - n_alerts * n_clients
    print(
        f"{n_clients:5d} clients  burst of {burst}: published in {published:.2f} s, all delivered in {elapsed:.2f} s "
        f"-> {burst / elapsed:7.1f} alerts/s sustained, {delivered / elapsed:9.0f} deliveries/s"
        f"{'' if complete else f'  (INCOMPLETE: {delivered}/{burst * n_clients})'}",
        flush=True,
    )
    for task in tasks:
        task.cancel()
    await bus.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--alerts", type=int, default=50)
    parser.add_argument("--burst", type=int, default=200)
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between alerts in the latency phase")
    parser.add_argument(
        "--no-pin",
        action="store_true",
        help="let the scheduler place everything (default: server and Redis on CPU 0, clients on CPU 1)",
    )
    args = parser.parse_args()
    cpus = sorted(os.sched_getaffinity(0))
    server_cpu, client_cpu = (None, None) if args.no_pin or len(cpus) < 2 else (cpus[0], cpus[1])
    on_cpu(client_cpu)()
    redis_port, port = free_port(), free_port()
    with tempfile.TemporaryDirectory() as tmp:
        redis = subprocess.Popen(
            [
                shutil.which("redis-server"),
                "--port",
                str(redis_port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                tmp,
            ],
            stdout=subprocess.DEVNULL,
            preexec_fn=on_cpu(server_cpu),
        )
        redis_url = f"redis://127.0.0.1:{redis_port}/0"
        env = {
            **os.environ,
            "API_TOKEN": TOKEN,
            "REDIS_URL": redis_url,
            "WATCH_INTERVAL_S": "3600",
            "DATABASE_URL": f"sqlite:///{Path(tmp) / 'control.db'}",
            "SSE_HEARTBEAT_S": "15",
            "MLFLOW_TRACKING_URI": f"sqlite:///{Path(tmp) / 'mlflow.db'}",
            "RAY_ADDRESS": "http://127.0.0.1:9",
        }
        log = open(Path(tmp) / "server.log", "w")  # noqa: SIM115 - closed with the server below
        server = subprocess.Popen(
            [sys.executable, "-m", "polyp_control.main", "--port", str(port)],
            env=env,
            preexec_fn=on_cpu(server_cpu),
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(120):
                try:
                    urllib.request.urlopen(f"{url}/healthz", timeout=1)
                    break
                except OSError:
                    time.sleep(0.5)
            split = (
                "scheduler's choice"
                if server_cpu is None
                else f"control service + redis-server on CPU {server_cpu}, clients + publisher on CPU {client_cpu}"
            )
            print(
                f"machine: {os.cpu_count()} CPUs; one control service process (uvicorn, 1 worker), redis-server, "
                f"clients in one asyncio process, all on 127.0.0.1; {split}"
            )
            for n in args.clients:
                asyncio.run(measure(url, redis_url, n, args.alerts, args.burst, args.interval))
        except Exception:
            print((Path(tmp) / "server.log").read_text()[-3000:], file=sys.stderr)
            raise
        finally:
            server.terminate()
            server.wait(timeout=30)
            log.close()
            redis.terminate()
            redis.wait(timeout=30)


if __name__ == "__main__":
    main()
