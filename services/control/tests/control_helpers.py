"""Helpers shared by the control service tests (a module of its own: conftest modules are not importable by name)."""

from __future__ import annotations

import contextlib
import json
import urllib.request
from pathlib import Path

from polyp_dev.net import free_port

TOKEN = "test-token-not-a-secret"  # the write token
READ_TOKEN = "test-read-token-not-a-secret"
REPO = Path(__file__).resolve().parents[3]


def closed_port_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


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
