"""Helpers shared by the control service tests (a module of its own: conftest modules are not importable by name)."""

from __future__ import annotations

from pathlib import Path

from polyp_dev.net import free_port

TOKEN = "test-token-not-a-secret"            # the write token
READ_TOKEN = "test-read-token-not-a-secret"
REPO = Path(__file__).resolve().parents[3]


def closed_port_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


def auth() -> dict:
    return {"Authorization": f"Bearer {TOKEN}"}


def read_auth() -> dict:
    return {"Authorization": f"Bearer {READ_TOKEN}"}
