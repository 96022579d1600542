"""The API's door (polyp_control.gate): no valid token, no body read; every body bounded while it is read."""

from __future__ import annotations

import asyncio
import json
import socket
import time

import pytest
from control_helpers import READ_TOKEN, TOKEN
from fastapi.testclient import TestClient

from polyp_control.app import create_app
from polyp_control.gate import JSON_BODY_LIMIT, READ_ONLY_CHANGES


def asgi_call(app, path: str, chunks: list[bytes], headers: dict[str, str]) -> tuple[int, dict, int]:
    """One HTTP request straight into the ASGI app: (status, body, how many body messages the app pulled)."""
    pulled, sent = 0, []

    async def receive():
        nonlocal pulled
        pulled += 1
        if pulled <= len(chunks):
            return {"type": "http.request", "body": chunks[pulled - 1], "more_body": pulled < len(chunks)}
        await asyncio.sleep(3600)  # the client has nothing more to send

    async def send(message):
        sent.append(message)

    raw_headers = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "", "server": ("127.0.0.1", 80),
             "client": ("127.0.0.1", 5000), "headers": raw_headers}  # fmt: skip
    asyncio.run(asyncio.wait_for(app(scope, receive, send), 30))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], json.loads(body), pulled


@pytest.fixture
def app(settings):
    return create_app(settings)


@pytest.mark.parametrize("token", [None, "not-a-token"])
def test_no_valid_token_is_401_before_a_byte_of_the_body_is_read(app, token):
    headers = {"content-type": "application/json", "content-length": str(30_000_000)}
    if token:
        headers["authorization"] = f"Bearer {token}"
    status, body, pulled = asgi_call(app, "/v1/runs", [b"{not json" * 1000], headers)
    assert status == 401 and "bearer token" in body["detail"]
    assert pulled == 0, "the body was read before the token was checked"


def test_malformed_json_without_a_token_is_401_not_422(settings):
    with TestClient(create_app(settings)) as client:
        refused = client.post("/v1/runs", content=b"{not json", headers={"Content-Type": "application/json"})
        assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
        with_token = client.post("/v1/runs", content=b"{not json", headers={"Authorization": f"Bearer {READ_TOKEN}",
                                                                          "Content-Type": "application/json"})  # fmt: skip
        assert with_token.status_code == 403  # the read token, on a route that changes something


def test_a_declared_body_over_the_limit_is_413_unread(app):
    headers = {"authorization": f"Bearer {TOKEN}", "content-type": "application/json",
               "content-length": str(JSON_BODY_LIMIT + 1)}  # fmt: skip
    status, body, pulled = asgi_call(app, "/v1/schedules", [b"x" * (JSON_BODY_LIMIT + 1)], headers)
    assert status == 413 and f"at most {JSON_BODY_LIMIT}" in body["detail"] and pulled == 0


def test_an_undeclared_body_is_cut_off_at_the_limit_while_it_is_read(app):
    """Chunked, no Content-Length: 413 as soon as the received bytes pass the limit, the rest never read."""
    chunks = [b"x" * 16_384] * 100  # 1.6 MB against 64 KiB
    status, body, pulled = asgi_call(app, "/v1/runs", chunks, {"authorization": f"Bearer {TOKEN}"})
    assert status == 413 and "larger than" in body["detail"]
    assert pulled == JSON_BODY_LIMIT // 16_384 + 1


def test_predict_takes_an_upload_up_to_its_own_limit(settings):
    settings.max_upload_bytes = 200_000
    with TestClient(create_app(settings)) as client:
        headers = {"Authorization": f"Bearer {READ_TOKEN}"}
        small = client.post("/v1/predict", files={"file": ("a.png", b"x" * 100_000, "image/png")}, headers=headers)
        assert small.status_code == 422  # past the gate (a JSON route would refuse 100 kB): not an image
        large = client.post("/v1/predict", files={"file": ("a.png", b"x" * 300_000, "image/png")}, headers=headers)
        assert large.status_code == 413


def test_a_real_server_answers_a_30_mb_upload_without_a_token_at_once(control_server):
    """Over a socket: the headers promise 30 MB, no byte of it is sent, and the 401 comes anyway."""
    server = control_server()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as conn:
        conn.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                     b"Content-Length: 30000000\r\n\r\n")  # fmt: skip
        started = time.monotonic()
        answer = conn.recv(4096).decode()
    assert answer.startswith("HTTP/1.1 401") and time.monotonic() - started < 5, answer


def test_the_gate_and_the_routes_agree_on_which_changes_need_the_write_token(app):
    """Each route documents its 403 (the write token's routes, api/responses.WRITE); the gate must let exactly
    the other changes through with the read token."""
    changes = {(path, method): "403" in operation["responses"] for path, item in app.openapi()["paths"].items()
               for method, operation in item.items() if path.startswith("/v1/") and method != "get"}  # fmt: skip
    assert len(changes) > 10
    assert {path for (path, _), needs_write in changes.items() if not needs_write} == READ_ONLY_CHANGES
