"""Faults injected against the real control service process: a dependency that hangs slows only the routes that
need it, and every answer comes within its timeout.

Ray hangs: a listener on loopback accepts every connection and never answers, which is what a wedged dashboard, a
stopped head pod behind a live Service or a half-open connection looks like to a client.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

from control_helpers import auth

RAY_TIMEOUT_S = 2


@contextlib.contextmanager
def silent_server() -> Iterator[str]:
    """An HTTP address that accepts connections and never sends a byte."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=128)
    listener.settimeout(0.2)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                held.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        for connection in [*held, listener]:
            connection.close()


def timed(url: str, method: str = "GET", body: dict | None = None, timeout_s: float = 30) -> tuple[int, float, dict]:
    """(status, seconds, decoded body) of one call with the write token; a client timeout counts as status 0."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, method=method, data=data, headers={**auth(), "Content-Type": "application/json"})
    began = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status, time.monotonic() - began, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, time.monotonic() - began, json.loads(error.read() or b"null")
    except TimeoutError:
        return 0, time.monotonic() - began, {}


def test_a_hung_ray_never_stalls_the_routes_that_do_not_need_it(control_server):
    """Six runs triggered at once while Ray hangs once took every thread of the pool the database calls share:
    listing runs and readiness hung with them. Now each Ray call ends within RAY_TIMEOUT_S in Ray's own threads."""
    with silent_server() as ray:
        server = control_server(RAY_ADDRESS=ray, RAY_TIMEOUT_S=str(RAY_TIMEOUT_S))
        with ThreadPoolExecutor(6) as pool:
            triggers = [pool.submit(timed, f"{server.url}/v1/runs", "POST", {"epochs": 1}) for _ in range(6)]
            time.sleep(0.5)  # the six are waiting on Ray now
            listing = timed(f"{server.url}/v1/runs", timeout_s=5)
            ready = timed(f"{server.url}/readyz", timeout_s=10)
            answers = [t.result() for t in triggers]
    print(f"\nRay hung: list {listing[1]:.2f} s, readyz {ready[0]} in {ready[1]:.2f} s, "
          f"triggers {[(status, round(seconds, 1)) for status, seconds, _ in answers]}")  # fmt: skip
    assert listing[0] == 200 and listing[1] < 2, listing
    assert ready[0] == 503 and ready[2]["checks"]["ray"]["ok"] is False, ready
    assert ready[1] < 2 * RAY_TIMEOUT_S + 1, ready  # bounded by Ray's timeout, not by the hung calls
    for status, seconds, run in answers:
        # Ray may have taken a job it never answered for: the run stays `submitting`, saying why, and is submitted
        # again under the same id (a duplicate Ray refuses), never failed and retried as a second job.
        assert status == 201 and seconds < 3 * RAY_TIMEOUT_S + 2, (status, seconds, run)
        assert run["status"] == "submitting" and f"did not answer within {RAY_TIMEOUT_S} s" in run["message"], run
