"""Schedules survive restarts, and two replicas on one database never fire the same schedule twice."""

from __future__ import annotations

import itertools
import time

from control_helpers import call


def test_schedules_survive_a_restart(control_server):
    first = control_server()
    created = call(f"{first.url}/v1/schedules", "POST", {"name": "weekly", "cron": "0 3 * * 1", "timezone": "UTC"})
    paused = call(f"{first.url}/v1/schedules", "POST", {"name": "hourly", "interval_seconds": 3600})
    call(f"{first.url}/v1/schedules/{paused['id']}/pause", "POST")
    first.stop()

    second = control_server()
    after = {s["id"]: s for s in call(f"{second.url}/v1/schedules")}
    assert after[created["id"]]["next_run_at"] == created["next_run_at"] and after[created["id"]]["cron"] == "0 3 * * 1"
    assert after[paused["id"]]["paused"] is True


def test_two_replicas_fire_each_due_time_once(control_server):
    """Both replicas share the database (as in a cluster); fires go to a Ray that refuses jobs, so each fire is one
    failed run."""
    replicas = [control_server(HOSTNAME="replica-a"), control_server(HOSTNAME="replica-b")]
    schedule = call(
        f"{replicas[0].url}/v1/schedules",
        "POST",
        {"name": "fast", "interval_seconds": 2, "max_attempts": 1, "params": {"epochs": 1}},
    )
    time.sleep(11)
    call(f"{replicas[1].url}/v1/schedules/{schedule['id']}/pause", "POST")
    runs = call(f"{replicas[0].url}/v1/runs?schedule_id={schedule['id']}")
    created = sorted(run["created_at"] for run in runs)
    assert len(created) >= 3, runs
    gaps = [b - a for a, b in itertools.pairwise(created)]
    assert min(gaps) > 1.0, f"two runs for one due time: {gaps}"
    assert all(run["status"] == "failed" and run["attempt"] == 1 for run in runs)
