"""Helpers shared by the control service tests (a module of its own: conftest modules are not importable by name)."""

from __future__ import annotations

import contextlib
import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from polyp_dev.net import free_port

TOKEN = "test-token-not-a-secret"  # the write token
READ_TOKEN = "test-read-token-not-a-secret"
REPO = Path(__file__).resolve().parents[3]


def closed_port_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


class _RefusingJobAPI(BaseHTTPRequestHandler):
    """Ray's job API as a head that is up but takes no job: its version answers, every job call is a 500."""

    def _answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # http.server calls it by this name
        if self.path == "/api/version":
            self._answer(200, {"version": "4", "ray_version": "2.52.0", "ray_commit": "simulated"})
        else:
            self._answer(500, {"error": "simulated: this Ray head refuses every job"})

    do_POST = do_GET

    def log_message(self, *args) -> None:
        pass


@contextlib.contextmanager
def refusing_ray() -> Iterator[str]:
    """The address of a simulated Ray head that answers and refuses every job (HTTP 500), so a run fails at once with
    Ray's reason: what the tests of failures, retries and their alerts need. (An unreachable Ray is another case: the
    run is not started and the caller gets 503.) A real Ray is used where a job must run (test_control_up, e2e)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _RefusingJobAPI)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def auth() -> dict:
    return {"Authorization": f"Bearer {TOKEN}"}


def read_auth() -> dict:
    return {"Authorization": f"Bearer {READ_TOKEN}"}


def register_version(tracking_uri: str, dice: float, champion: bool = False, name: str = "polyp-segmenter") -> str:
    """A model version in a real MLflow registry, as training registers it (val_dice tag); champion: it passed
    the gate and is the one served."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri, registry_uri=tracking_uri)
    with contextlib.suppress(MlflowException):  # exists already
        client.create_registered_model(name)
    version = client.create_model_version(name, "file:///tmp/model", run_id=None)
    client.set_model_version_tag(name, version.version, "val_dice", f"{dice:.4f}")
    if champion:
        client.set_registered_model_alias(name, "champion", version.version)
    return version.version


def call(url: str, method: str = "GET", body: dict | None = None):
    """A JSON call to a running control service with the write token; its decoded answer."""
    request = urllib.request.Request(
        url,
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={**auth(), "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read() or b"null")


def wait_for(predicate, timeout_s: float, what: str):
    """predicate()'s first truthy value, asked every 0.2 s; AssertionError naming `what` after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")
