"""Faults injected against the real control service process: a dependency that hangs or stops slows only the routes
that need it, every answer comes within its timeout, and nothing is lost or done twice.

Ray hangs: a listener on loopback accepts every connection and never answers, which is what a wedged dashboard, a
stopped head pod behind a live Service or a half-open connection looks like to a client (simulated: no Ray runs).
PostgreSQL and the replicas are real servers and processes.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import pytest
from control_helpers import auth, closed_port_url, wait_for
from sqlalchemy import create_engine, inspect, text

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


class Answer(NamedTuple):
    status: int  # 0: no answer within the client's timeout (or the connection failed)
    seconds: float
    body: dict
    retry_after: str | None


def timed(url: str, method: str = "GET", body: dict | None = None, timeout_s: float = 30, headers: dict | None = None) -> Answer:
    """One call with the write token, timed."""
    data = json.dumps(body).encode() if body is not None else None
    headers = {**auth(), "Content-Type": "application/json", **(headers or {})}
    request = urllib.request.Request(url, method=method, data=data, headers=headers)
    began = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return Answer(response.status, time.monotonic() - began, json.loads(response.read() or b"null"), None)
    except urllib.error.HTTPError as error:
        return Answer(error.code, time.monotonic() - began, json.loads(error.read() or b"null"), error.headers["Retry-After"])
    except (TimeoutError, urllib.error.URLError, ConnectionError):
        return Answer(0, time.monotonic() - began, {}, None)


def test_a_hung_ray_never_stalls_the_routes_that_do_not_need_it(control_server):
    """Six runs triggered at once while Ray hangs once took every thread of the pool the database calls share:
    listing runs and readiness hung with them. Now each Ray call ends within RAY_TIMEOUT_S in Ray's own threads, and
    the replica stays ready (Ray is reported, not required)."""
    with silent_server() as ray:
        server = control_server(RAY_ADDRESS=ray, RAY_TIMEOUT_S=str(RAY_TIMEOUT_S))
        with ThreadPoolExecutor(6) as pool:
            triggers = [pool.submit(timed, f"{server.url}/v1/runs", "POST", {"epochs": 1}) for _ in range(6)]
            time.sleep(0.5)  # the six are waiting on Ray now
            listing = timed(f"{server.url}/v1/runs", timeout_s=5)
            ready = timed(f"{server.url}/readyz", timeout_s=10)
            answers = [t.result() for t in triggers]
    print(f"\nRay hung: list {listing[1]:.2f} s, readyz {ready[0]} in {ready[1]:.2f} s, "
          f"triggers {[(status, round(seconds, 1)) for status, seconds, _, _ in answers]}")  # fmt: skip
    assert listing[0] == 200 and listing[1] < 2, listing
    assert ready.status == 200 and ready.body["checks"]["ray"]["ok"] is False, ready  # ready: Ray is not required
    assert ready[1] < 2 * RAY_TIMEOUT_S + 1, ready  # bounded by Ray's timeout, not by the hung calls
    for status, seconds, run, _ in answers:
        # Ray may have taken a job it never answered for: the run stays `submitting`, saying why, and is submitted
        # again under the same id (a duplicate Ray refuses), never failed and retried as a second job.
        assert status == 201 and seconds < 3 * RAY_TIMEOUT_S + 2, (status, seconds, run)
        assert run["status"] == "submitting" and f"did not answer within {RAY_TIMEOUT_S} s" in run["message"], run


SCHEDULES = 6


def start_replicas(control_server, count: int, **env) -> list:
    """`count` control service processes started at once (as a Deployment's replicas are)."""
    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(lambda i: control_server(INSTANCE_ID=f"replica-{i}", **env), range(count)))


def test_concurrent_run_now_calls_start_one_run_per_schedule(control_server, postgres_url):
    """Three replicas on one database each get "run this schedule now" at the same moment, for each of several
    schedules. The check-then-insert once let two or three through (several runs of one schedule, several retry
    chains when Ray failed); now the database admits one active run per schedule, and the others get 409. Ray
    hangs, so each schedule's one run stays active while the others are refused."""
    with silent_server() as ray:
        replicas = start_replicas(control_server, 3, DATABASE_URL=postgres_url, RAY_ADDRESS=ray, RAY_TIMEOUT_S="2")
        schedules = [
            timed(f"{replicas[0].url}/v1/schedules", "POST", {"name": f"nightly-{i}", "cron": "0 2 * * *"}).body["id"]
            for i in range(SCHEDULES)
        ]
        with ThreadPoolExecutor(3 * SCHEDULES) as pool:
            calls = {
                (schedule_id, replica.url): pool.submit(timed, f"{replica.url}/v1/schedules/{schedule_id}/run", "POST")
                for schedule_id in schedules
                for replica in replicas
            }
            answers = {key: call.result() for key, call in calls.items()}
        runs = {schedule_id: timed(f"{replicas[0].url}/v1/runs?schedule_id={schedule_id}").body for schedule_id in schedules}
    statuses = {s: sorted(a.status for (sid, _), a in answers.items() if sid == s) for s in schedules}
    print(f"\n{3 * SCHEDULES} run-now calls on {SCHEDULES} schedules: runs per schedule {[len(r) for r in runs.values()]}")
    assert all(len(r) == 1 and r[0]["status"] == "submitting" for r in runs.values()), runs
    assert all(s == [201, 409, 409] for s in statuses.values()), statuses
    refused = [a for a in answers.values() if a.status == 409]
    assert all("still" in a.body["detail"] for a in refused), refused


MIGRATE_AT = """
import sys, time
from polyp_control import db
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
db.make_engine(sys.argv[1]).dispose()
"""


OLDER_RUNS_TABLE = (  # polyp_runs as the first version created it, before the lifecycle columns
    "CREATE TABLE polyp_runs (id VARCHAR(32) PRIMARY KEY, status VARCHAR(16) NOT NULL, params JSON NOT NULL,"
    " schedule_id VARCHAR(64), attempt INTEGER NOT NULL, submission_id VARCHAR(64), idempotency_key VARCHAR(200),"
    " created_at FLOAT NOT NULL, started_at FLOAT, finished_at FLOAT, message TEXT, result JSON)"
)


@pytest.mark.parametrize("start", ["empty", "older"])
def test_three_replicas_migrating_one_database_at_once_all_start(postgres_url, start):
    """Three processes bring one database to the current schema at the same instant, as three replicas of a fresh
    install (an empty database) or of an upgrade (an older schema) do. Each once ran create_all and ALTER TABLE with
    no lock, so all but one could fail; now the migrations run once, under an advisory lock, and the others find
    the schema current."""
    engine = create_engine(postgres_url)
    if start == "older":
        with engine.begin() as conn:
            conn.execute(text(OLDER_RUNS_TABLE))
            conn.execute(
                text("INSERT INTO polyp_runs (id, status, params, attempt, created_at) VALUES ('old', 'succeeded', '{}', 1, 1)")
            )
    at = time.time() + 8  # after every process has imported the service
    processes = [
        subprocess.Popen([sys.executable, "-c", MIGRATE_AT, postgres_url, str(at)], stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    errors = [process.communicate(timeout=120)[1] for process in processes]
    print(f"\nthree concurrent migrations of an {start} database: exit codes {[p.returncode for p in processes]}")
    assert [p.returncode for p in processes] == [0, 0, 0], [e[-1500:] for e in errors]
    with engine.connect() as conn:
        versions = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
        tables = set(inspect(conn).get_table_names())
        runs = conn.execute(text("SELECT id, deadline FROM polyp_runs")).all()
    engine.dispose()
    assert len(versions) == 1 and {"polyp_runs", "polyp_watches", "polyp_leases", "polyp_alerts"} <= tables
    assert runs == ([("old", None)] if start == "older" else [])


def test_postgresql_stopped_and_restarted_gives_503_then_carries_on(control_server, own_postgres):
    """The database stops (a fast shutdown, as when its pod is deleted) while requests keep coming, and comes back.
    Every request is answered within its timeout: 200 or 201, or 503 with Retry-After naming the database, never a
    500 or a hang; once it is back, requests succeed again and nothing written before is lost."""
    server = control_server(DATABASE_URL=own_postgres.create_database(), DATABASE_TIMEOUT_S="3")
    before = timed(f"{server.url}/v1/runs", "POST", {"epochs": 1}).body  # Ray refuses the job: a failed run, stored
    schedule = timed(f"{server.url}/v1/schedules", "POST", {"name": "nightly", "cron": "0 2 * * *"}).body
    answers: list[Answer] = []
    stop = threading.Event()

    def keep_asking() -> None:
        while not stop.is_set():
            for path in ("/v1/runs", "/v1/schedules", f"/v1/runs/{before['id']}"):
                answers.append(timed(f"{server.url}{path}", timeout_s=10))
            time.sleep(0.1)

    asker = threading.Thread(target=keep_asking)
    asker.start()
    try:
        time.sleep(1)
        own_postgres.stop()
        time.sleep(4)
        down = timed(f"{server.url}/v1/runs", "POST", {"epochs": 1}, timeout_s=10)
        own_postgres.start()
        wait_for(lambda: timed(f"{server.url}/v1/runs").status == 200, 30, "the service to answer again")
        time.sleep(1)
    finally:
        stop.set()
        asker.join()
    by_status: dict[int, int] = {}
    for answer in [*answers, down]:
        by_status[answer.status] = by_status.get(answer.status, 0) + 1
    slowest = max(a.seconds for a in [*answers, down])
    print(f"\nPostgreSQL stopped 4 s: {len(answers) + 1} requests, answers by status {by_status}, slowest {slowest:.2f} s")
    assert set(by_status) <= {200, 503} and by_status.get(503), by_status
    unavailable = [a for a in [*answers, down] if a.status == 503]
    assert all(a.retry_after and "database" in a.body["detail"] for a in unavailable), unavailable[:3]
    assert down.status == 503 and slowest < 3 * 2 + 1
    assert answers[-1].status == 200
    assert [r["id"] for r in timed(f"{server.url}/v1/runs").body] == [before["id"]]
    assert [s["id"] for s in timed(f"{server.url}/v1/schedules").body] == [schedule["id"]]


def test_ray_down_at_trigger_time_is_503_and_a_scheduled_fire_waits_queued(control_server):
    """Ray's address refuses connections (the head pod is gone). Once, each trigger answered 201 with a failed run and
    a critical alert: one blip gave six. Now a caller gets 503 with Retry-After and nothing is kept (its
    Idempotency-Key too is free again); a schedule's fire waits, queued, to be submitted when Ray is back; no alert."""
    server = control_server(RAY_ADDRESS=closed_port_url(), LEASE_TTL_S="3", RUN_POLL_INTERVAL_S="0.3")
    keyed = {"Idempotency-Key": "blip"}
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: timed(f"{server.url}/v1/runs", "POST", {"epochs": 1}), range(6)))
    replay = timed(f"{server.url}/v1/runs", "POST", {}, headers=keyed)
    cron = timed(f"{server.url}/v1/schedules", "POST", {"name": "nightly", "cron": "0 2 * * *"}).body
    run_now = timed(f"{server.url}/v1/schedules/{cron['id']}/run", "POST")
    frequent = timed(f"{server.url}/v1/schedules", "POST", {"name": "often", "interval_seconds": 1}).body
    wait_for(lambda: timed(f"{server.url}/v1/runs?schedule_id={frequent['id']}").body, 20, "the schedule to fire")
    time.sleep(2)  # more fires: each skipped while the queued run waits
    timed(f"{server.url}/v1/schedules/{frequent['id']}/pause", "POST")
    runs = timed(f"{server.url}/v1/runs").body
    alerts = timed(f"{server.url}/v1/alerts").body
    print(
        f"\nRay down: triggers {[(a.status, round(a.seconds, 2)) for a in answers]}, run-now {run_now.status}, runs {len(runs)}"
    )
    assert all(a.status == 503 and a.retry_after == "30" and "not reachable" in a.body["detail"] for a in answers), answers
    assert max(a.seconds for a in answers) < 5 and replay.status == 503 and run_now.status == 503
    [queued] = runs  # the fire's run only: nothing kept of the refused calls
    assert queued["schedule_id"] == frequent["id"] and queued["status"] == "queued", queued
    assert "not reachable" in queued["message"] and queued["not_before"] > time.time() + 20, queued
    assert [a for a in alerts if a["type"].startswith("training")] == [], alerts  # the freshness watch may fire: no model


def alerts_of_run(url: str, run_id: str) -> list[dict]:
    return [a for a in timed(f"{url}/v1/alerts?limit=1000").body if a["details"].get("run_id") == run_id]


def test_an_alert_decided_while_redis_is_down_survives_a_sigkill_and_arrives_once(control_server, postgres_url, own_redis):
    """Redis is away when a run fails, and the replica that closed the run is SIGKILLed before it could publish the
    alert. Once, the alert was published after the commit, so this lost it for good (and the trigger itself failed).
    Now it is staged in the outbox in the run's own transaction: the next lease holder relays it once Redis is back,
    and it is seen exactly once. Ray refuses every job (simulated), so the run fails at once."""
    common = {"DATABASE_URL": postgres_url, "REDIS_URL": own_redis.url, "LEASE_TTL_S": "3", "REDIS_TIMEOUT_S": "2"}
    first = control_server(INSTANCE_ID="replica-a", **common)
    own_redis.stop()
    failed = timed(f"{first.url}/v1/runs", "POST", {"epochs": 1}, timeout_s=20)
    first.proc.kill()  # SIGKILL: whatever it still meant to do is gone with it
    first.proc.wait()
    own_redis.start()
    second = control_server(INSTANCE_ID="replica-b", **common)
    wait_for(lambda: alerts_of_run(second.url, failed.body.get("id", "?")), 30, "the relayed alert")
    time.sleep(3)  # a duplicate from a second relay round would show by now
    seen = alerts_of_run(second.url, failed.body.get("id", "?"))
    print(f"\nRedis down, replica killed: trigger {failed.status} in {failed.seconds:.2f} s; alerts seen {len(seen)} of 1")
    assert failed.status == 201 and failed.body["status"] == "failed", failed
    assert [a["type"] for a in seen] == ["training_failed"], seen


def test_redis_restarting_mid_stream_delays_an_alert_and_loses_none(control_server, own_redis):
    """An SSE client stays connected through a Redis restart (empty afterwards, as after a failover to a replica that
    had not caught up). A run failing meanwhile stages its alert; the stream delivers it once Redis is back, once."""
    server = control_server(REDIS_URL=own_redis.url, LEASE_TTL_S="3", REDIS_TIMEOUT_S="2", SSE_HEARTBEAT_S="1")
    received: list[dict] = []
    stop, closed = threading.Event(), threading.Event()

    def listen() -> None:
        request = urllib.request.Request(f"{server.url}/v1/alerts/stream", headers=auth())
        with urllib.request.urlopen(request, timeout=10) as stream:
            while not stop.is_set():
                line = stream.readline()
                if not line:  # the server ended the stream
                    closed.set()
                    return
                if line.startswith(b"data:"):
                    received.append(json.loads(line[5:]))

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    time.sleep(1)
    own_redis.stop()
    failed = timed(f"{server.url}/v1/runs", "POST", {"epochs": 1}, timeout_s=20)
    time.sleep(2)
    own_redis.start()
    ours = lambda: [a for a in received if a["details"].get("run_id") == failed.body.get("id")]  # noqa: E731
    wait_for(ours, 30, "the alert on the open stream")
    time.sleep(3)
    stayed_open = not closed.is_set()
    stop.set()
    print(f"\nRedis restarted mid-stream: trigger {failed.status}; alerts on the open stream {len(ours())} of 1")
    assert failed.status == 201 and [a["type"] for a in ours()] == ["training_failed"], (failed, received)
    assert stayed_open  # the stream stayed open through the restart
