"""/v1/watches and their evaluation: against a real MLflow registry (SQLite) and the service's own database."""

from __future__ import annotations

import asyncio
import time

import pytest
from control_helpers import auth, read_auth, register_version
from fastapi.testclient import TestClient

from polyp_control import db
from polyp_control.alerts import LocalBus
from polyp_control.app import create_app
from polyp_control.metrics import Metrics
from polyp_control.outbox import Outbox
from polyp_control.registry import ModelRegistry
from polyp_control.watches import Watches, WatchSpec

DEFAULTS = {"model-freshness", "model-quality-floor", "model-quality-ceiling"}


def run(coroutine):
    return asyncio.run(coroutine)


def make_watches(settings) -> Watches:
    """A replica's watches: its own instance over the shared database and bus."""
    engine = db.make_engine(settings.database_url)
    outbox = Outbox(engine, LocalBus(engine))
    return Watches(engine, ModelRegistry(settings.mlflow_tracking_uri, settings.model_name), outbox, Metrics(), settings)


@pytest.fixture
def client(settings):
    with TestClient(create_app(settings)) as client:
        yield client


def test_the_environment_watches_are_created_on_first_start_and_listed(client, settings):
    listed = client.get("/v1/watches", headers=read_auth()).json()
    assert {w["id"] for w in listed} == DEFAULTS
    floor = client.get("/v1/watches/model-quality-floor", headers=read_auth()).json()
    assert floor["check"] == {"kind": "quality", "metric": "val_dice", "floor": settings.dice_floor, "ceiling": None}
    assert floor["target"] == "champion" and floor["managed_by"] == "settings" and floor["severity"] == "critical"
    assert floor["state"]["status"] == "pending" and floor["state"]["last_checked"] is None


def test_create_get_replace_pause_resume_delete(client):
    spec = {
        "description": "v3 stays good",
        "target": "3",
        "check": {"kind": "quality", "floor": 0.8},
        "interval_s": 30,
        "severity": "critical",
    }
    created = client.post("/v1/watches", json=spec, headers=auth())
    assert created.status_code == 201, created.text
    watch = created.json()
    assert watch["id"].startswith("w-") and watch["managed_by"] == "api" and not watch["paused"]
    assert client.get(f"/v1/watches/{watch['id']}", headers=read_auth()).json()["check"]["floor"] == 0.8

    spec["check"] = {"kind": "freshness", "max_age_hours": 12}
    replaced = client.put(f"/v1/watches/{watch['id']}", json=spec, headers=auth()).json()
    assert replaced["check"] == {"kind": "freshness", "max_age_hours": 12.0}
    assert client.post(f"/v1/watches/{watch['id']}/pause", headers=auth()).json()["paused"] is True
    assert client.post(f"/v1/watches/{watch['id']}/resume", headers=auth()).json()["paused"] is False
    assert client.delete(f"/v1/watches/{watch['id']}", headers=auth()).status_code == 204
    gone = client.get(f"/v1/watches/{watch['id']}", headers=read_auth())
    assert gone.status_code == 404 and "no watch" in gone.json()["detail"]


@pytest.mark.parametrize(
    "spec, complaint",
    [
        ({"check": {"kind": "quality"}}, "needs a floor, a ceiling or both"),
        ({"check": {"kind": "quality", "floor": 0.9, "ceiling": 0.8}}, "must be below ceiling"),
        ({"check": {"kind": "quality", "floor": 1.5}}, "less than or equal to 1"),
        ({"check": {"kind": "freshness", "max_age_hours": 0}}, "greater than 0"),
        ({"check": {"kind": "latency", "max_ms": 5}}, "does not match any of the expected tags"),
        ({"check": {"kind": "run_failures", "count": 0, "window_hours": 24}}, "greater than or equal to 1"),
        ({"check": {"kind": "freshness", "max_age_hours": 1}, "target": "champion; drop"}, "target"),
        ({"check": {"kind": "freshness", "max_age_hours": 1}, "interval_s": 1}, "interval_s"),
        ({"check": {"kind": "freshness", "max_age_hours": 1}, "colour": "red"}, "colour"),
    ],
)
def test_bad_watches_are_422_with_what_was_wrong(client, spec, complaint):
    answer = client.post("/v1/watches", json=spec, headers=auth())
    assert answer.status_code == 422 and complaint in answer.text, answer.text


def test_writes_need_the_write_token_and_defaults_are_paused_not_deleted(client):
    spec = {"check": {"kind": "freshness", "max_age_hours": 1}}
    assert client.post("/v1/watches", json=spec).status_code == 401
    assert client.post("/v1/watches", json=spec, headers=read_auth()).status_code == 403
    refused = client.delete("/v1/watches/model-freshness", headers=auth())
    assert refused.status_code == 409 and "pause it" in refused.json()["detail"]
    assert client.get("/v1/watches/model-freshness", headers=read_auth()).status_code == 200


def test_a_gated_version_neither_resolves_nor_starts_freshness_only_the_served_one_does(settings):
    """The bug: a version that failed the gate (not champion, not published) resolved model_stale."""
    watches = make_watches(settings)
    watches.ensure_defaults()

    async def scenario():
        first = await watches.check()
        assert [(a.type, a.state, a.details["watch_id"]) for a in first] == [("model_stale", "firing", "model-freshness")]
        assert "nothing is served" in first[0].message
        register_version(settings.mlflow_tracking_uri, dice=0.26)  # gated: registered, never champion
        assert await watches.check() == []
        assert watches.get("model-freshness").state.status == "firing"
        register_version(settings.mlflow_tracking_uri, dice=0.82, champion=True)  # passed the gate: served
        resolved = await watches.check()
        assert [(a.type, a.state) for a in resolved] == [("model_stale", "resolved")]
        assert "polyp-segmenter v2 (champion) is 0.0 h old (limit 36 h)" in resolved[0].message
        state = watches.get("model-freshness").state
        assert state.status == "ok" and state.last_value == pytest.approx(0, abs=0.01) and state.since >= state.last_checked - 1

    run(scenario())


def test_quality_episodes_of_the_served_model_alert_once_and_survive_a_restart(settings):
    settings.watch_interval_s = 3600
    make_watches(settings).ensure_defaults()

    async def scenario():
        await make_watches(settings).check()  # the freshness episode: no model yet
        register_version(settings.mlflow_tracking_uri, dice=0.42, champion=True)
        changed = await make_watches(settings).check()
        assert {(a.type, a.state) for a in changed} == {("model_stale", "resolved"), ("model_quality_low", "firing")}
        assert await make_watches(settings).check() == []  # open episode, a restarted service: nothing twice
        register_version(settings.mlflow_tracking_uri, dice=0.995, champion=True)
        changed = await make_watches(settings).check()
        assert {(a.type, a.state, a.details["watch_id"]) for a in changed} == {
            ("model_quality_low", "resolved", "model-quality-floor"),
            ("model_quality_suspicious", "firing", "model-quality-ceiling"),
        }
        low = make_watches(settings).get("model-quality-floor").state
        assert low.status == "ok" and low.last_value == pytest.approx(0.995)

    run(scenario())


def test_two_replicas_racing_publish_each_transition_once(settings):
    """The conditional write decides: the replica whose read went stale publishes nothing."""
    first, second = make_watches(settings), make_watches(settings)
    first.ensure_defaults()
    stale_rows = first.store.due(due_only=False, now=time.time())

    async def scenario():
        won = [alert for row in stale_rows for alert in await first.check_one(row, time.time())]
        lost = [alert for row in stale_rows for alert in await second.check_one(row, time.time())]
        return won, lost

    won, lost = run(scenario())
    assert [(a.type, a.state) for a in won] == [("model_stale", "firing")] and lost == []
    history = run(first.outbox.bus.history(limit=100))
    assert [(a.type, a.state) for a in history] == [("model_stale", "firing")]


def test_a_watch_on_a_version_number_and_a_run_failure_watch(settings):
    watches = make_watches(settings)
    version = register_version(settings.mlflow_tracking_uri, dice=0.5)
    on_version = watches.create(WatchSpec(target=version, check={"kind": "quality", "floor": 0.6}))
    failures = watches.create(WatchSpec(check={"kind": "run_failures", "count": 2, "window_hours": 1}))
    now = time.time()
    with watches.store.engine.begin() as conn:
        for i, finished in enumerate((now - 60, now - 30, now - 7200)):  # two in the window, one long before
            conn.execute(
                db.runs.insert().values(
                    id=f"r{i}", status="failed", params={}, attempt=1, created_at=finished, finished_at=finished
                )
            )

    sent = run(watches.check())
    assert {(a.type, a.details["watch_id"]) for a in sent} == {
        ("model_quality_low", on_version.id),
        ("training_failures", failures.id),
    }
    assert watches.get(failures.id).state.last_value == 2
    assert watches.get(on_version.id).state.message == "polyp-segmenter v1 val_dice 0.500 is below the floor 0.6"


def test_defaults_follow_the_settings_until_edited_and_deleting_resolves_an_open_episode(settings):
    watches = make_watches(settings)
    watches.ensure_defaults()
    settings.dice_floor = 0.75  # the chart's value changed: the default follows on the next start
    make_watches(settings).ensure_defaults()
    assert watches.get("model-quality-floor").check.floor == 0.75
    edited = watches.replace("model-quality-floor", WatchSpec(check={"kind": "quality", "floor": 0.6}))
    assert edited.managed_by == "api"
    settings.dice_floor = 0.9
    make_watches(settings).ensure_defaults()
    assert watches.get("model-quality-floor").check.floor == 0.6  # taken over: the settings no longer apply

    spec = WatchSpec(check={"kind": "freshness", "max_age_hours": 1})
    doomed = watches.create(spec)
    run(watches.check())  # no model: its freshness episode opens
    run(watches.delete(doomed.id))
    last = run(watches.outbox.bus.history(limit=100))[-1]
    assert (last.type, last.state, last.details["watch_id"]) == ("model_stale", "resolved", doomed.id)


def test_paused_watches_are_not_evaluated(settings):
    watches = make_watches(settings)
    watch = watches.create(WatchSpec(check={"kind": "freshness", "max_age_hours": 1}))
    watches.set_paused(watch.id, True)
    assert run(watches.check()) == [] and watches.get(watch.id).state.status == "pending"
    watches.set_paused(watch.id, False)
    assert [a.details["watch_id"] for a in run(watches.check())] == [watch.id]


def test_an_episode_open_under_the_earlier_fixed_watches_carries_over(settings):
    engine = db.make_engine(settings.database_url)
    with engine.begin() as conn:
        conn.execute(db.watch_state.insert().values(name="model_stale", firing=1, since=123.0, alert_id="7-0"))
    watches = make_watches(settings)
    watches.ensure_defaults()
    assert watches.get("model-freshness").state.since == 123.0
    assert run(watches.check()) == []  # still no model: the episode was already announced, not again


def test_mlflow_down_during_a_check_postpones_the_watch_with_one_line_not_a_traceback(settings, caplog):
    """MLflow unreachable: the watch is not evaluated (no alert either way), one warning says why, and the next try
    waits a minute instead of the loop's 5 s tick (it once logged ~580 tracebacks in 2.5 min). Once MLflow is back,
    the watch is evaluated as before."""
    from control_helpers import closed_port_url

    down = settings.model_copy(update={"mlflow_tracking_uri": closed_port_url()})
    watches = make_watches(down)
    watch = watches.create(WatchSpec(check={"kind": "freshness", "max_age_hours": 1}, interval_s=600))
    with caplog.at_level("WARNING", logger="polyp_control.watches.service"):
        before = time.time()
        assert run(watches.check(due_only=True)) == []
        assert run(watches.check(due_only=True)) == []  # not due again yet: MLflow is not asked a second time
    lines = [r for r in caplog.records if watch.id in r.getMessage()]
    assert len(lines) == 1 and lines[0].exc_info is None and "MLflow is not reachable" in lines[0].getMessage(), lines
    row = watches.store.row(watch.id)
    assert before + 60 <= row.next_check <= time.time() + 60 and watches.get(watch.id).state.status == "pending"
    watches.registry = ModelRegistry(settings.mlflow_tracking_uri, settings.model_name)  # MLflow is back
    assert [a.details["watch_id"] for a in run(watches.check())] == [watch.id]


def test_replicas_starting_at_once_on_a_new_database_create_the_defaults_once(settings, postgres_url):
    """Three replicas of a fresh install create the environment's watches at the same moment: once each inserted
    them, and the others failed to start (a duplicate key), as `make test-fast` once showed."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    replicas = [make_watches(settings.model_copy(update={"database_url": postgres_url})) for _ in range(3)]
    together = threading.Barrier(3)

    def start(watches: Watches) -> None:
        together.wait()
        watches.ensure_defaults()

    with ThreadPoolExecutor(3) as pool:
        [future.result() for future in [pool.submit(start, watches) for watches in replicas]]
    assert sorted(w.id for w in replicas[0].list()) == sorted(DEFAULTS)
