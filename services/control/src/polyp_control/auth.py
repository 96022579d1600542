"""Who may call what: a read token and a write token (each from its own Secret), and short-lived stream tickets.

- read (API_READ_TOKEN): alerts, runs and their logs, models, predict;
- write (API_TOKEN): everything read may, plus trigger, schedules, cancel.
An EventSource cannot send headers, so the alert page trades its token for a ticket that opens the
stream once, within TICKET_TTL_S seconds: no long-lived token in a URL, and this service's access log
shows tickets redacted (RedactTickets).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import secrets
import time
from typing import Annotated
from urllib.parse import unquote

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from .errors import Forbidden, Unauthorized
from .settings import Settings

TICKET_TTL_S = 60
TICKET_IN_URL = re.compile(r"([?&]ticket=)[^&\s]*")
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


def check_ticket(write_token: str, ticket: str, now: float | None = None) -> int:
    """The seconds the ticket has left; Unauthorized (401) unless this service issued it and it has not expired.
    Whether it was used before is the caller's to check (stream_access claims it once)."""
    body, _, mac = ticket.rpartition(".")
    expected = base64.urlsafe_b64encode(hmac.new(_ticket_key(write_token), body.encode(), hashlib.sha256).digest())
    if not body or not hmac.compare_digest(mac.encode(), expected.decode().rstrip("=").encode()):
        raise Unauthorized("invalid stream ticket: get one from POST /v1/alerts/ticket")
    left = int(body.split(".")[0]) - (now or time.time())
    if left < 0:
        raise Unauthorized("stream ticket expired: get a new one from POST /v1/alerts/ticket")
    return int(left) + 1


class RedactTickets(logging.Filter):
    """This process's access-log lines show `ticket=<redacted>`: a URL is where a ticket travels in the clear."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):  # decoded first: Starlette reads ticke%74= as ticket=
            record.args = tuple(TICKET_IN_URL.sub(r"\1<redacted>", unquote(a)) if isinstance(a, str) else a for a in record.args)
        return True
