"""Who may call what: a read token and a write token (each from its own Secret), and short-lived stream tickets.

- read (API_READ_TOKEN): alerts, runs and their logs, models, predict;
- write (API_TOKEN): everything read may, plus trigger, schedules, cancel.
An EventSource cannot send headers, so the alert page trades its token for a ticket that opens the
stream for TICKET_TTL_S seconds: no long-lived token in a URL that lands in access logs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from .errors import Forbidden, Unauthorized
from .settings import Settings

TICKET_TTL_S = 60
WRITE_NEEDED = "this operation needs the write token (API_TOKEN); the read token only reads"
bearer = HTTPBearer(
    auto_error=False,
    scheme_name="token",
    description="API_READ_TOKEN (read) or API_TOKEN (read and write), as `Authorization: Bearer <token>`",
)
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


def role_of(settings: Settings, scheme: str, token: str) -> str:
    """The role a token has here, "write" or "read"; Unauthorized for anything but this service's tokens."""
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("missing bearer token: send 'Authorization: Bearer <token>' (API_READ_TOKEN or API_TOKEN)")
    given = token.encode()
    if settings.api_token and hmac.compare_digest(given, settings.api_token.encode()):
        return "write"
    if settings.api_read_token and hmac.compare_digest(given, settings.api_read_token.encode()):
        return "read"
    raise Unauthorized("invalid bearer token", 'Bearer error="invalid_token"')


def _role(request: Request, credentials: HTTPAuthorizationCredentials | None) -> str:
    if credentials is None:
        return role_of(request.app.state.settings, "", "")
    return role_of(request.app.state.settings, credentials.scheme, credentials.credentials)


def require_read(request: Request, credentials: Credentials) -> str:
    return _role(request, credentials)


def require_write(request: Request, credentials: Credentials) -> str:
    if _role(request, credentials) != "write":
        raise Forbidden(WRITE_NEEDED)
    return "write"


def _ticket_key(write_token: str) -> bytes:
    # Derived from the write token, so every replica verifies every replica's tickets.
    return hashlib.sha256(b"polyp-stream-ticket:" + write_token.encode()).digest()


def issue_ticket(write_token: str, now: float | None = None) -> str:
    expires = int((now or time.time()) + TICKET_TTL_S)
    body = f"{expires}.{secrets.token_urlsafe(8)}"
    mac = hmac.new(_ticket_key(write_token), body.encode(), hashlib.sha256).digest()
    return f"{body}.{base64.urlsafe_b64encode(mac).decode().rstrip('=')}"


def check_ticket(write_token: str, ticket: str, now: float | None = None) -> None:
    """Unauthorized (401) unless the ticket was issued by this service and has not expired."""
    body, _, mac = ticket.rpartition(".")
    expected = base64.urlsafe_b64encode(hmac.new(_ticket_key(write_token), body.encode(), hashlib.sha256).digest())
    if not body or not hmac.compare_digest(mac.encode(), expected.decode().rstrip("=").encode()):
        raise Unauthorized("invalid stream ticket: get one from POST /v1/alerts/ticket")
    if int(body.split(".")[0]) < (now or time.time()):
        raise Unauthorized("stream ticket expired: get a new one from POST /v1/alerts/ticket")
