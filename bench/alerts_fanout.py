"""Alert fan-out: N concurrent SSE clients on the control service, alerts published through Redis.

    uv run python bench/alerts_fanout.py [--clients 100 1000] [--alerts 50] [--burst 200]

Starts redis-server and one control service process (loopback), connects N EventSource-like
clients to /v1/alerts/stream, then
  1. latency: publishes --alerts alerts --interval apart (default 50 ms); publish->receive latency over every
     (client, alert) delivery, p50/p99;
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
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))


class Client:
    def __init__(self):
        self.received: dict[str, float] = {}  # alert message -> receive latency (s)
        self.connected = asyncio.Event()

    async def run(self, session, url: str):
        async with session.get(f"{url}/v1/alerts/stream", headers={"Authorization": f"Bearer {TOKEN}"}) as response:
            self.connected.set()
            async for raw in response.content:
                if raw.startswith(b"data:"):
                    alert = json.loads(raw[5:])
                    self.received[alert["message"]] = time.time() - alert["at"]


async def wait_for(predicate, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.05)
    return False


async def measure(url: str, redis_url: str, n_clients: int, n_alerts: int, burst: int, interval: float) -> None:
    import aiohttp

    bus = RedisBus(redis_url)
    clients = [Client() for _ in range(n_clients)]
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None)) as session:
        tasks = [asyncio.ensure_future(c.run(session, url)) for c in clients]
        await asyncio.wait_for(asyncio.gather(*(c.connected.wait() for c in clients)), 120)
        await asyncio.sleep(1)  # every subscription is live on the server side

        for i in range(n_alerts):
            await bus.publish(Alert(type="bench", message=f"lat-{i}", at=time.time()))
            await asyncio.sleep(interval)
        complete = await wait_for(lambda: all(len(c.received) >= n_alerts for c in clients), 60)
        latencies = np.array([v for c in clients for k, v in c.received.items() if k.startswith("lat-")]) * 1000
        p50, p99 = np.percentile(latencies, 50), np.percentile(latencies, 99)
        print(f"{n_clients:5d} clients  one alert every {interval * 1000:.0f} ms, latency over {latencies.size} deliveries: "
              f"p50 {p50:7.1f} ms  p99 {p99:7.1f} ms  max {latencies.max():7.1f} ms"
              f"{'' if complete else '  (INCOMPLETE)'}", flush=True)

        started = time.time()
        for i in range(burst):
            await bus.publish(Alert(type="bench", message=f"burst-{i}", at=time.time()))
        published = time.time() - started
        complete = await wait_for(lambda: all(len(c.received) >= n_alerts + burst for c in clients), 300)
        elapsed = time.time() - started
        delivered = sum(1 for c in clients for k in c.received if k.startswith("burst-"))
        print(f"{n_clients:5d} clients  burst of {burst}: published in {published:.2f} s, all delivered in {elapsed:.2f} s "
              f"-> {burst / elapsed:7.1f} alerts/s sustained, {delivered / elapsed:9.0f} deliveries/s"
              f"{'' if complete else f'  (INCOMPLETE: {delivered}/{burst * n_clients})'}", flush=True)
        for task in tasks:
            task.cancel()
    await bus.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--alerts", type=int, default=50)
    parser.add_argument("--burst", type=int, default=200)
    parser.add_argument("--interval", type=float, default=0.05, help="seconds between alerts in the latency phase")
    args = parser.parse_args()
    raise_fd_limit()
    redis_port, port = free_port(), free_port()
    with tempfile.TemporaryDirectory() as tmp:
        redis = subprocess.Popen([shutil.which("redis-server"), "--port", str(redis_port), "--bind", "127.0.0.1",
                                  "--save", "", "--appendonly", "no", "--dir", tmp], stdout=subprocess.DEVNULL)
        redis_url = f"redis://127.0.0.1:{redis_port}/0"
        env = {**os.environ, "API_TOKEN": TOKEN, "REDIS_URL": redis_url, "WATCH_INTERVAL_S": "3600",
               "DATABASE_URL": f"sqlite:///{Path(tmp) / 'control.db'}", "SSE_HEARTBEAT_S": "15",
               "MLFLOW_TRACKING_URI": f"sqlite:///{Path(tmp) / 'mlflow.db'}", "RAY_ADDRESS": "http://127.0.0.1:9"}
        log = open(Path(tmp) / "server.log", "w")  # noqa: SIM115 - closed with the server below
        server = subprocess.Popen([sys.executable, "-m", "polyp_control.main", "--port", str(port)], env=env,
                                  preexec_fn=raise_fd_limit, stdout=subprocess.DEVNULL, stderr=log)
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(120):
                try:
                    urllib.request.urlopen(f"{url}/healthz", timeout=1)
                    break
                except OSError:
                    time.sleep(0.5)
            print(f"machine: {os.cpu_count()} CPUs; one control service process (uvicorn, 1 worker), "
                  f"redis-server, clients in one asyncio process, all on 127.0.0.1")
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
