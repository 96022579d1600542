"""The run lifecycle is durable: retries, SLA deadlines and submissions live in the database, so a crash or a
restart of any replica, in the middle of a backoff or of a submission, loses nothing and starts nothing twice.

Two (or three) real server processes share one database (SQLite, or a real PostgreSQL as in a cluster) and one
Redis, as replicas do in a cluster. Ray is
unreachable in the first tests, so each attempt fails at submission: that is the failure being retried.
"""

from __future__ import annotations

import json
import time
import urllib.request

import pytest
from control_helpers import call, wait_for

from polyp_control import db

LEASE = {"LEASE_TTL_S": "3", "RUN_POLL_INTERVAL_S": "0.3"}


def runs_of(server, schedule_id: str) -> list[dict]:
    return sorted(call(f"{server.url}/v1/runs?schedule_id={schedule_id}"), key=lambda run: run["attempt"])


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_a_retry_survives_the_crash_of_the_lease_holder_and_a_restart_mid_backoff(control_server, redis_url, database, request):
    """On SQLite (make up) and on PostgreSQL (a cluster's database)."""
    common = {**LEASE, "REDIS_URL": redis_url}
    if database == "postgresql":
        common["DATABASE_URL"] = request.getfixturevalue("postgres_url")
    leader = control_server(HOSTNAME="replica-a", **common)  # first up: takes the scheduler lease
    other = control_server(HOSTNAME="replica-b", **common)
    schedule = call(
        f"{other.url}/v1/schedules",
        "POST",
        {"name": "nightly", "cron": "0 2 * * *", "max_attempts": 3, "retry_backoff_seconds": 4, "params": {"epochs": 1}},
    )

    first = call(f"{other.url}/v1/schedules/{schedule['id']}/run", "POST")
    assert first["status"] == "failed" and "cannot submit to Ray" in first["message"]
    queued = runs_of(other, schedule["id"])[1]
    assert (queued["status"], queued["attempt"]) == ("queued", 2)
    assert queued["not_before"] == pytest.approx(first["finished_at"] + 4, abs=0.01)
    assert queued["retry_policy"] == {"max_attempts": 3, "backoff_s": 4, "sla_s": None}

    leader.proc.kill()  # a crash in the middle of the backoff: the lease holder that was to submit the retry
    wait_for(
        lambda: [r for r in runs_of(other, schedule["id"]) if r["attempt"] == 2 and r["status"] == "failed"],
        30,
        "attempt 2 to be submitted by the surviving replica",
    )
    third = next(r for r in runs_of(other, schedule["id"]) if r["attempt"] == 3)
    assert third["status"] == "queued" and third["not_before"] > time.time()  # 8 s backoff ahead

    restarted = control_server(HOSTNAME="replica-c", **common)  # a new pod for the crashed one
    other.stop()  # and a rolling restart of the other, in the middle of attempt 3's backoff
    wait_for(
        lambda: [r for r in runs_of(restarted, schedule["id"]) if r["attempt"] == 3 and r["status"] == "failed"],
        40,
        "attempt 3 to be submitted after the restart",
    )
    time.sleep(2)  # long enough for a duplicate submission or a fourth attempt to show

    runs = runs_of(restarted, schedule["id"])
    assert [(r["attempt"], r["status"]) for r in runs] == [(1, "failed"), (2, "failed"), (3, "failed")], runs
    failures = [
        a
        for a in call(f"{restarted.url}/v1/alerts")
        if a["type"] == "training_failed" and a["details"].get("schedule_id") == schedule["id"]
    ]
    assert sorted(a["details"]["attempt"] for a in failures) == [1, 2, 3], "each failure alerted exactly once"
    assert failures[0]["details"]["retry_run_id"] == queued["id"] and failures[-1]["details"]["retry_run_id"] is None


def test_a_schedule_runs_once_at_a_time_its_queued_retry_included(control_server):
    server = control_server(**LEASE)
    schedule = call(
        f"{server.url}/v1/schedules",
        "POST",
        {"name": "n", "interval_seconds": 86400, "max_attempts": 2, "retry_backoff_seconds": 600},
    )
    call(f"{server.url}/v1/schedules/{schedule['id']}/run", "POST")
    with pytest.raises(urllib.error.HTTPError) as busy:
        call(f"{server.url}/v1/schedules/{schedule['id']}/run", "POST")
    assert busy.value.code == 409 and "queued" in json.loads(busy.value.read())["detail"]
    queued = runs_of(server, schedule["id"])[1]
    cancelled = call(f"{server.url}/v1/runs/{queued['id']}/cancel", "POST")
    assert cancelled["status"] == "cancelled"
    assert call(f"{server.url}/v1/schedules/{schedule['id']}/run", "POST")["attempt"] == 1


def seed_run(database_url: str, run_id: str, claimed_ago_s: float, **values) -> None:
    """A run as a crash between recording it and submitting it leaves it: `submitting`, no submission id."""
    engine = db.make_engine(database_url)
    now = time.time()
    with engine.begin() as conn:
        conn.execute(
            db.runs.insert().values(
                **{
                    "id": run_id,
                    "status": "submitting",
                    "params": {"epochs": 1},
                    "attempt": 1,
                    "created_at": now - claimed_ago_s,
                    "claimed_at": now - claimed_ago_s,
                    **values,
                }
            )
        )
    engine.dispose()


def test_a_run_left_submitting_by_a_crash_is_submitted_again_after_the_timeout(control_server, tmp_path):
    database_url = f"sqlite:///{tmp_path / 'control.db'}"
    seed_run(
        database_url,
        "stuck",
        claimed_ago_s=600,
        schedule_id="s1",
        retry_policy={"max_attempts": 2, "backoff_s": 3600, "sla_s": None},
    )
    seed_run(database_url, "being-submitted", claimed_ago_s=1)  # within the timeout: another replica is on it
    seed_run(database_url, "from-before-upgrade", claimed_ago_s=600, claimed_at=None)  # the earlier version's stuck row
    server = control_server(SUBMIT_TIMEOUT_S="120", **LEASE)

    stuck = wait_for(
        lambda: (r := call(f"{server.url}/v1/runs/stuck"))["status"] != "submitting" and r, 20, "the stuck run to be recovered"
    )
    # Submitted again; Ray refuses every job here, so it fails with the reason, and its retry is queued.
    assert stuck["status"] == "failed" and "cannot submit to Ray" in stuck["message"]
    assert [(r["attempt"], r["status"]) for r in runs_of(server, "s1")] == [(1, "failed"), (2, "queued")]
    assert call(f"{server.url}/v1/runs/being-submitted")["status"] == "submitting"
    wait_for(
        lambda: call(f"{server.url}/v1/runs/from-before-upgrade")["status"] == "failed",
        20,
        "the earlier version's stuck run to be recovered",
    )


@pytest.mark.ray
def test_recovery_and_sla_deadlines_against_a_real_ray(control_server, tmp_path):
    """A fresh process carries on from the rows: a run Ray accepted just before a crash (the row still says
    `submitting`) is found by its submission id and followed, not submitted twice; a run past its stored SLA
    deadline is stopped in Ray, cancelled and alerted once; a schedule's run gets its deadline when submitted."""
    from ray.job_submission import JobStatus, JobSubmissionClient

    from polyp_dev.local_ray import LocalRayHead
    from polyp_dev.net import free_port

    database_url = f"sqlite:///{tmp_path / 'control.db'}"
    seed_run(database_url, "submitted", claimed_ago_s=600)
    seed_run(
        database_url,
        "overdue",
        claimed_ago_s=600,
        schedule_id="s1",
        submission_id="polyp-overdue-1",
        retry_policy={"max_attempts": 1, "backoff_s": 0, "sla_s": 60},
        deadline=time.time() - 1,
    )
    with LocalRayHead(free_port(), num_cpus=2, log=tmp_path / "ray.log") as ray:
        client = JobSubmissionClient(ray.address)
        client.submit_job(entrypoint="echo trained", submission_id="polyp-submitted-1")
        client.submit_job(entrypoint="sleep 600", submission_id="polyp-overdue-1")
        wait_for(lambda: client.get_job_status("polyp-overdue-1") == JobStatus.RUNNING, 60, "the slow job to run")
        engine = db.make_engine(database_url)
        with engine.begin() as conn:  # as the row was before the crash: submitted and running
            conn.execute(db.runs.update().where(db.runs.c.id == "overdue").values(status="running"))
        engine.dispose()
        server = control_server(RAY_ADDRESS=ray.address, **LEASE)

        run = wait_for(
            lambda: (r := call(f"{server.url}/v1/runs/submitted"))["status"] == "succeeded" and r,
            120,
            "the recovered run to be followed to its end",
        )
        assert run["submission_id"] == "polyp-submitted-1"
        overdue = wait_for(
            lambda: (r := call(f"{server.url}/v1/runs/overdue"))["status"] == "cancelled" and r,
            30,
            "the overdue run to be cancelled",
        )
        assert overdue["message"] == "SLA of 1 min exceeded"
        wait_for(lambda: client.get_job_status("polyp-overdue-1") == JobStatus.STOPPED, 30, "Ray to stop the job")
        missed = [a for a in call(f"{server.url}/v1/alerts") if a["type"] == "training_sla_missed"]
        assert [a["details"]["run_id"] for a in missed] == ["overdue"]

        schedule = call(f"{server.url}/v1/schedules", "POST", {"name": "sla", "cron": "0 2 * * *", "sla_minutes": 1})
        before = time.time()
        started = call(f"{server.url}/v1/schedules/{schedule['id']}/run", "POST")
        assert started["status"] == "pending" and before + 60 <= started["deadline"] <= time.time() + 60
        submissions = sorted(job.submission_id for job in client.list_jobs())
        assert submissions == sorted(["polyp-submitted-1", "polyp-overdue-1", started["submission_id"]])


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_an_older_database_gains_the_lifecycle_columns_and_keeps_its_runs(tmp_path, database, request):
    from sqlalchemy import create_engine, text

    url = request.getfixturevalue("postgres_url") if database == "postgresql" else f"sqlite:///{tmp_path / 'old.db'}"
    old = create_engine(url)
    with old.begin() as conn:  # polyp_runs as the previous version created it
        conn.execute(
            text(
                "CREATE TABLE polyp_runs (id VARCHAR(32) PRIMARY KEY, status VARCHAR(16) NOT NULL,"
                " params JSON NOT NULL, schedule_id VARCHAR(64), attempt INTEGER NOT NULL,"
                " submission_id VARCHAR(64), idempotency_key VARCHAR(200), created_at FLOAT NOT NULL,"
                " started_at FLOAT, finished_at FLOAT, message TEXT, result JSON)"
            )
        )
        conn.execute(
            text("INSERT INTO polyp_runs (id, status, params, attempt, created_at) VALUES ('old', 'succeeded', '{}', 1, 1)")
        )
    old.dispose()
    engine = db.make_engine(url)
    with engine.begin() as conn:
        row = conn.execute(db.runs.select()).mappings().one()
        conn.execute(db.runs.update().values(retry_policy={"max_attempts": 2}, deadline=5.0))
        updated = conn.execute(db.runs.select()).mappings().one()
    engine.dispose()
    assert row["id"] == "old" and row["deadline"] is None and row["retry_policy"] is None
    assert updated["retry_policy"] == {"max_attempts": 2} and updated["deadline"] == 5.0


def test_a_replica_that_lost_the_lease_cannot_claim_a_due_run(settings):
    """Fencing: a replica that still believes it leads (paused past its lease, cut off while renewing) submits
    nothing; the claim checks the lease in the same statement. The holder claims the run (and Ray, which refuses every
    job here, fails it)."""
    import asyncio

    from polyp_control.alerts import LocalBus
    from polyp_control.jobs import RayJobs
    from polyp_control.leader import Lease
    from polyp_control.metrics import Metrics
    from polyp_control.outbox import Outbox
    from polyp_control.runs import RunService

    engine = db.make_engine(settings.database_url)
    with engine.begin() as conn:
        conn.execute(
            db.runs.insert().values(id="due", status="queued", params={"epochs": 1}, attempt=2, created_at=1, not_before=1)
        )
    holder, stale = Lease(engine, "scheduler", "replica-a"), Lease(engine, "scheduler", "replica-b")
    assert holder.acquire() and not stale.acquire()
    runs = RunService(engine, RayJobs(settings.ray_address), Outbox(engine, LocalBus(engine)), Metrics(), settings)

    def status() -> str:
        with engine.connect() as conn:
            return conn.execute(db.runs.select().where(db.runs.c.id == "due")).mappings().one()["status"]

    runs.lease = stale
    asyncio.run(runs.submit_due())
    fenced = status()
    runs.lease = holder
    asyncio.run(runs.submit_due())
    engine.dispose()
    assert (fenced, status()) == ("queued", "failed")
