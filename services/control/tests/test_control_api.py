"""The HTTP API in process (TestClient): auth, validation, 404s, runs, schedules, predict errors, metrics."""

from __future__ import annotations

import io
import json
import logging
import shlex
from pathlib import Path

import pytest
from control_helpers import TOKEN, auth, closed_port_url, read_auth
from fastapi.testclient import TestClient
from PIL import Image

from polyp_control.app import create_app
from polyp_control.auth import TICKET_TTL_S, RedactTickets, check_ticket, issue_ticket
from polyp_control.errors import Unauthorized
from polyp_control.jobs import Hyperparameters
from polyp_control.settings import Settings


@pytest.fixture
def client(settings):
    """Reads carry the read token; a test that writes passes the write token (auth())."""
    with TestClient(create_app(settings), headers=read_auth()) as client:
        yield client


def test_no_token_configured_refuses_to_start(settings):
    settings.api_token = None
    with pytest.raises(ValueError, match="API_TOKEN is not set"):
        create_app(settings)


def _operations(app):
    """(method, concrete path, needs write) for every /v1 operation the OpenAPI document lists."""
    for path, item in app.openapi()["paths"].items():
        if path.startswith("/v1"):
            for method, operation in item.items():
                write = method != "get" and path not in READ_ONLY_POSTS
                yield method, path.replace("{run_id}", "r1").replace("{schedule_id}", "s1"), write, operation


READ_ONLY_POSTS = {"/v1/predict", "/v1/alerts/ticket"}  # POSTs that change nothing


def test_every_v1_operation_needs_a_token_and_writes_need_the_write_token(settings):
    """Generated from the OpenAPI document: a new endpoint cannot forget its check."""
    app = create_app(settings)
    operations = list(_operations(app))
    assert len(operations) >= 15
    with TestClient(app) as bare:
        for method, path, write, operation in operations:
            assert operation.get("security") == [{"token": []}], f"{method} {path}: no security scheme documented"
            missing = bare.request(method, path)
            assert missing.status_code == 401, (method, path, missing.status_code)
            assert "missing bearer token" in missing.json()["detail"] and missing.headers["WWW-Authenticate"].startswith("Bearer")
            wrong = bare.request(method, path, headers={"Authorization": "Bearer nope"})
            assert wrong.status_code == 401 and wrong.json()["detail"] == "invalid bearer token", (method, path)
            if write:
                reader = bare.request(method, path, headers=read_auth())
                assert reader.status_code == 403 and "needs the write token" in reader.json()["detail"], (method, path)
            elif path != "/v1/alerts/stream":  # an open stream never ends; its token and ticket are tested over HTTP
                reader = bare.request(method, path, headers=read_auth())
                assert reader.status_code not in (401, 403), (method, path, reader.status_code)
        for path in ("/healthz", "/metrics"):  # probes and Prometheus stay open
            assert bare.get(path).status_code == 200, path
        assert bare.get("/readyz").status_code in (200, 503)
    scheme = app.openapi()["components"]["securitySchemes"]["token"]
    assert scheme == {**scheme, "type": "http", "scheme": "bearer"}


def test_the_write_token_reads_too(client):
    assert client.get("/v1/runs", headers=auth()).status_code == 200


def test_stream_tickets_expire_and_cannot_be_forged():
    ticket = issue_ticket(TOKEN, now=1000.0)
    assert check_ticket(TOKEN, ticket, now=1000.0 + TICKET_TTL_S - 1) == 2  # seconds left, rounded up: its claim's expiry
    for bad, now in (
        (ticket, 1000.0 + TICKET_TTL_S + 1),
        (issue_ticket("another-token", now=1000.0), 1000.0),
        (ticket.replace(ticket.split(".")[0], "9999999999", 1), 1000.0),
        ("garbage", 1000.0),
    ):
        with pytest.raises(Unauthorized) as refused:
            check_ticket(TOKEN, bad, now=now)
        assert refused.value.status == 401


@pytest.mark.parametrize(
    "body, message",
    [
        ({"name": "n", "cron": "61 * * * *"}, "invalid cron expression '61 * * * *'"),
        ({"name": "n", "cron": "every day"}, "invalid cron expression"),
        ({"name": "n", "cron": "0 0 30 2 *"}, "cron expression '0 0 30 2 *' never fires"),  # February 30th
        ({"name": "n"}, "give exactly one of cron or interval_seconds"),
        ({"name": "n", "cron": "0 2 * * *", "interval_seconds": 60}, "give exactly one of cron or interval_seconds"),
        ({"name": "n", "cron": "0 2 * * *", "timezone": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"),
        ({"name": "n", "interval_seconds": 60, "params": {"epochs": 0}}, "greater than or equal to 1"),
        ({"name": "n", "interval_seconds": 60, "max_attempts": 0}, "greater than or equal to 1"),
    ],
)
def test_bad_schedules_are_422_with_the_reason(client, body, message):
    response = client.post("/v1/schedules", json=body, headers=auth())
    assert response.status_code == 422
    assert message in str(response.json()["detail"])


@pytest.mark.parametrize(
    "path, body",
    [
        ("/v1/runs", '{"lr": NaN}'),
        ("/v1/runs", '{"dice_threshold": Infinity}'),
        ("/v1/watches", '{"check": {"kind": "quality", "floor": NaN}}'),
        ("/v1/schedules", '{"name": "n", "interval_seconds": 60, "retry_backoff_seconds": -Infinity}'),
    ],
)
def test_nan_and_infinity_are_422_not_500(client, path, body):
    """Python's json reads NaN and Infinity, JSON has neither: refused as not finite, and echoed as text."""
    response = client.post(path, content=body, headers={**auth(), "Content-Type": "application/json"})
    assert response.status_code == 422, response.text
    assert any("finite" in error["msg"] for error in response.json()["detail"]), response.text


@pytest.mark.parametrize(
    "method, path, allowed",
    [("DELETE", "/v1/runs", "GET, POST"), ("PUT", "/v1/schedules/s-1", "DELETE, GET"),
     ("POST", "/v1/watches/w-1", "DELETE, GET, PUT"), ("GET", "/v1/alerts/ticket", "POST")],
)  # fmt: skip
def test_405_lists_every_method_of_the_path_in_allow(client, method, path, allowed):
    response = client.request(method, path, headers=auth())
    assert response.status_code == 405 and response.headers["allow"] == allowed
    assert response.json()["detail"] == f"{method} is not supported here; use {allowed}"


def test_schedule_lifecycle(client):
    created = client.post(
        "/v1/schedules",
        headers=auth(),
        json={
            "name": "nightly",
            "cron": "30 2 * * *",
            "timezone": "Europe/Oslo",
            "params": {"epochs": 5},
            "max_attempts": 2,
            "sla_minutes": 90,
        },
    )
    assert created.status_code == 201, created.text
    schedule = created.json()
    assert schedule["next_run_at"] and not schedule["paused"] and schedule["params"]["epochs"] == 5
    sid = schedule["id"]
    assert [s["id"] for s in client.get("/v1/schedules").json()] == [sid]
    paused = client.post(f"/v1/schedules/{sid}/pause", headers=auth()).json()
    assert paused["paused"] and paused["next_run_at"] is None
    resumed = client.post(f"/v1/schedules/{sid}/resume", headers=auth()).json()
    assert not resumed["paused"] and resumed["next_run_at"]
    assert client.delete(f"/v1/schedules/{sid}", headers=auth()).status_code == 204
    assert client.get(f"/v1/schedules/{sid}").status_code == 404


@pytest.mark.parametrize(
    "method, path",
    [
        ("get", "/v1/schedules/nope"),
        ("post", "/v1/schedules/nope/pause"),
        ("post", "/v1/schedules/nope/resume"),
        ("delete", "/v1/schedules/nope"),
        ("get", "/v1/runs/nope"),
        ("get", "/v1/runs/nope/logs"),
        ("post", "/v1/runs/nope/cancel"),
    ],
)
def test_unknown_ids_are_404(client, method, path):
    response = getattr(client, method)(path, headers=auth())
    assert response.status_code == 404 and "nope" in response.json()["detail"]


@pytest.mark.parametrize(
    "body, message",
    [
        ({"epochs": 0}, "greater than or equal to 1"),
        ({"size": 100}, "multiple of 32"),
        ({"arch": "Transformer9000"}, "should match pattern"),
        ({"data": "/data; rm -rf /"}, "should match pattern"),
        ({"learning_rate": 0.1}, "extra"),
    ],
)
def test_bad_hyperparameters_are_422(client, body, message):
    response = client.post("/v1/runs", json=body, headers=auth())
    assert response.status_code == 422 and message in str(response.json()["detail"]).lower()


def test_ray_refusing_the_job_fails_the_run_with_a_reason_and_an_alert(client):
    response = client.post("/v1/runs", json={"epochs": 1}, headers=auth())
    assert response.status_code == 201
    run = response.json()
    assert run["status"] == "failed" and "cannot submit to Ray" in run["message"]
    alerts = client.get("/v1/alerts").json()
    assert alerts[-1]["type"] == "training_failed" and run["id"] in alerts[-1]["message"]
    assert 'polyp_training_runs_total{status="failed"} 1.0' in client.get("/metrics").text


@pytest.mark.parametrize("key", ["abc-123", ""])  # an empty key is a key too (Schemathesis sent one: it was a 500)
def test_idempotency_key_returns_the_same_run(client, key):
    headers = {**auth(), "Idempotency-Key": key}
    first = client.post("/v1/runs", json={"epochs": 2}, headers=headers)
    again = client.post("/v1/runs", json={"epochs": 2}, headers=headers)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]
    assert len(client.get("/v1/runs").json()) == 1


def test_predict_errors(client):
    oversized = client.post("/v1/predict", files={"file": ("a.png", b"\x89PNG" + b"\0" * (10 * 1024 * 1024 + 1), "image/png")})
    assert oversized.status_code == 413 and "larger than the limit" in oversized.json()["detail"]
    assert client.post("/v1/predict", files={"file": ("a.txt", b"hello", "text/plain")}).status_code == 415
    no_model = client.post("/v1/predict", files={"file": ("a.png", _png(), "image/png")})
    assert no_model.status_code == 503 and "Retry-After" in no_model.headers
    client.get("/v1/runs")  # other routes are not timed as predictions
    assert "polyp_predict_latency_seconds_count 3.0" in client.get("/metrics").text


def test_model_version_pins_what_predict_serves(settings):
    """MODEL_VERSION=N: /v1/predict answers with N though a newer version is published; unset: the newest."""
    from polyp_core.repository import MODEL_FILE
    from polyp_dev.onnx_models import constant_model

    repo = Path(settings.model_repo)
    for version in (1, 2):
        constant_model(repo / "polyp-segmenter" / str(version) / MODEL_FILE, logit=float(version))
    pinned = settings.model_copy(update={"model_version": 1})
    for configured, served in ((pinned, "1"), (settings, "2")):
        with TestClient(create_app(configured)) as client:
            answer = client.post("/v1/predict", files={"file": ("a.png", _png(), "image/png")}, headers=read_auth())
            assert answer.status_code == 200 and answer.json()["version"] == served, answer.text


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (32, 24), (150, 60, 60)).save(out, format="PNG")
    return out.getvalue()


def test_a_stream_ticket_opens_the_stream_once(client):
    """A ticket leaked from a URL (a proxy's log, the browser's history) is worth nothing once used."""
    ticket = client.post("/v1/alerts/ticket", headers=read_auth()).json()["ticket"]
    with client.stream("GET", f"/v1/alerts/stream?ticket={ticket}") as first:
        assert first.status_code == 200
    with client.stream("GET", f"/v1/alerts/stream?ticket={ticket}") as again:  # a stream: a 200 would never end
        assert again.status_code == 401 and "already used" in json.loads(again.read())["detail"]


def test_a_stream_ticket_with_the_bus_unreachable_is_503_not_500(settings):
    unreachable = settings.model_copy(update={"redis_url": closed_port_url().replace("http", "redis")})
    with TestClient(create_app(unreachable)) as client:
        ticket = client.post("/v1/alerts/ticket", headers=read_auth()).json()["ticket"]
        with client.stream("GET", f"/v1/alerts/stream?ticket={ticket}") as answer:  # a 200 here would never end
            assert answer.status_code == 503 and answer.headers["Retry-After"] == "5"
            assert "alert bus unreachable" in json.loads(answer.read())["detail"]


def test_tickets_are_redacted_from_the_access_log():
    for query in ("after=1-0&ticket=1700000000.abc.MAC", "after=1-0&ticke%74=1700000000.abc.MAC"):  # Starlette decodes
        access = ("127.0.0.1:5", "GET", f"/v1/alerts/stream?{query}", "1.1", 200)
        line = logging.LogRecord("uvicorn.access", logging.INFO, "", 0, '%s - "%s %s HTTP/%s" %d', access, None)
        assert RedactTickets().filter(line)
        assert line.getMessage() == '127.0.0.1:5 - "GET /v1/alerts/stream?after=1-0&ticket=<redacted> HTTP/1.1" 200'


def test_readiness_needs_the_database_and_redis_and_only_reports_ray_and_mlflow(settings):
    """Without Ray (or MLflow) the replica still serves its core routes: it stays ready, saying what is away, and only
    the routes that need Ray answer 503. Without Redis (the alert bus of every replica) it is not ready."""
    ray_away = settings.model_copy(update={"ray_address": closed_port_url()})
    with TestClient(create_app(ray_away)) as client:
        ready = client.get("/readyz")
        listing = client.get("/v1/runs", headers=auth())
        trigger = client.post("/v1/runs", json={"epochs": 1}, headers=auth())
    checks = ready.json()["checks"]
    assert ready.status_code == 200 and checks["ray"] == {"ok": False, "required": False, "address": ray_away.ray_address}
    assert checks["database"]["ok"] and checks["mlflow"]["ok"] and checks["alerts"]["via"] == "in-process"
    assert listing.status_code == 200 and trigger.status_code == 503 and trigger.headers["Retry-After"] == "30"

    redis_away = settings.model_copy(update={"redis_url": closed_port_url().replace("http", "redis")})
    with TestClient(create_app(redis_away)) as client:
        unready = client.get("/readyz")
    assert unready.status_code == 503 and unready.json()["checks"]["alerts"] == {"ok": False, "required": True, "via": "redis"}


def test_cors_allows_only_the_page_origin(client):
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}
    allowed = client.options("/v1/runs", headers={"Origin": "http://page.example", **preflight})
    assert allowed.headers.get("access-control-allow-origin") == "http://page.example"
    other = client.options("/v1/runs", headers={"Origin": "http://evil.example", **preflight})
    assert "access-control-allow-origin" not in other.headers


def test_openapi_documents_versioned_routes(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/runs", "/v1/schedules", "/v1/alerts/stream", "/v1/models/latest", "/v1/predict"} <= set(paths)
    assert TOKEN not in client.get("/openapi.json").text


def test_a_run_without_a_gate_is_gated_at_the_quality_floor(client, settings):
    """One setting: the Dice a model needs to become champion is the floor the quality watch alerts below."""
    from polyp_control.jobs import Hyperparameters, entrypoint

    assert settings.dice_floor == 0.70
    run = client.post("/v1/runs", json={"epochs": 1}, headers=auth()).json()
    assert run["params"]["dice_threshold"] == settings.dice_floor
    explicit = client.post("/v1/runs", json={"epochs": 1, "dice_threshold": 0.3}, headers=auth()).json()
    assert explicit["params"]["dice_threshold"] == 0.3
    command = entrypoint(Hyperparameters(**run["params"]), "/data", "/repo", "r1")
    assert "--dice-threshold 0.7" in command


def test_training_data_may_name_several_datasets_and_a_run_may_pick_one(client, settings):
    """TRAINING_DATA `kvasir=… clinicdb=…` trains on both together; a run's `data` replaces it."""
    from polyp_control.jobs import Hyperparameters, entrypoint

    training_data = "kvasir=s3://datasets/kvasir clinicdb=s3://datasets/cvc"
    both = shlex.split(entrypoint(Hyperparameters(dice_threshold=0.7), training_data, "/r", "r1"))
    assert [both[i + 1] for i, word in enumerate(both) if word == "--data"] == [
        "kvasir=s3://datasets/kvasir",
        "clinicdb=s3://datasets/cvc",
    ]
    kvasir = f"kvasir={settings.training_data}/kvasir"  # under TRAINING_DATA's folder: a readable root
    one = client.post("/v1/runs", json={"epochs": 1, "data": kvasir}, headers=auth())
    assert one.status_code == 201, one.text
    command = shlex.split(entrypoint(Hyperparameters(**one.json()["params"]), "a=/x b=/y", "/r", "r2"))
    assert command.count("--data") == 1 and kvasir in command
    bad = client.post("/v1/runs", json={"data": "kvasir=/data; rm -rf /"}, headers=auth())
    assert bad.status_code == 422 and "data" in bad.text


def test_the_readable_roots_come_from_training_data_unless_set():
    from polyp_control.jobs import default_data_roots

    assert default_data_roots("kvasir=s3://datasets/kvasir clinicdb=s3://datasets/cvc") == ["s3://datasets/"]
    assert default_data_roots("/home/u/kvasir") == ["/home/u/kvasir/"]  # the folder, never its parent (a home)
    assert Settings(data_roots="s3://a s3://b/sets/", training_data="s3://c/x").readable_roots() == ["s3://a/", "s3://b/sets/"]
    assert Settings(data_roots=["s3://datasets"]).readable_roots() == ["s3://datasets/"]  # not s3://datasets-other
    for everything in ("/", "s3://"):
        with pytest.raises(ValueError, match="would admit every path"):
            Settings(data_roots=everything)


@pytest.mark.parametrize(
    "data, reason",
    [
        ("/var/run/secrets/kubernetes.io/serviceaccount", "under one of the configured dataset locations"),
        ("s3://another-bucket/kvasir", "under one of the configured dataset locations"),
        ("kvasir=s3://datasets-not/kvasir", "under one of the configured dataset locations"),
        ("s3://datasets/kvasir/../../secrets", "no '..'"),
        ("s3://datasets//etc/x", "empty path segments"),
        ("s3://datasets/", "under one of the configured dataset locations"),  # the root itself: no dataset
    ],
)
def test_a_run_reads_only_under_the_dataset_roots(settings, data, reason):
    """A run's `data` used to accept any absolute path or bucket: the service account token included."""
    confined = settings.model_copy(update={"training_data": "kvasir=s3://datasets/kvasir"})
    with TestClient(create_app(confined)) as client:
        run = client.post("/v1/runs", json={"data": data}, headers=auth())
        assert run.status_code == 422 and reason in run.text, run.text
        assert run.json()["detail"][0]["loc"] == ["body", "data"]
        schedule = client.post(
            "/v1/schedules", json={"name": "nightly", "interval_seconds": 3600, "params": {"data": data}}, headers=auth()
        )
        assert schedule.status_code == 422 and schedule.json()["detail"][0]["loc"] == ["body", "params", "data"]
        assert client.get("/v1/runs", headers=auth()).json() == [] and client.get("/v1/schedules", headers=auth()).json() == []
        assert client.post("/v1/runs", json={"data": "s3://datasets/cvc"}, headers=auth()).status_code == 201
        # A schedule saved before the roots were checked fires through the same service: its run fails, unsent.
        run, _ = client.portal.call(client.app.state.runs.trigger, Hyperparameters(data=data))
        failed = client.get(f"/v1/runs/{run.id}", headers=auth()).json()
        assert failed["status"] == "failed" and reason in failed["message"] and failed["submission_id"] is None, failed
