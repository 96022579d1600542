"""/v1/alerts: history, and the live SSE stream with Last-Event-ID replay."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request
from pydantic import BaseModel
from redis.exceptions import RedisError
from sse_starlette.sse import EventSourceResponse

from ..alerts import Alert, unique
from ..auth import TICKET_TTL_S, Credentials, check_ticket, issue_ticket, require_read
from ..errors import SlowSubscriber, Unauthorized, Unavailable
from . import responses
from .deps import READ, BusDep, MetricsDep, SettingsDep

RECONNECT_MS = 1000  # the retry hint for a client told to reconnect
CLAIM_TIMEOUT_S = 5  # the most a ticket's claim may wait on Redis
router = APIRouter(prefix="/v1/alerts", tags=["alerts"], responses=responses.READ)


class Ticket(BaseModel):
    ticket: str
    expires_in: int


async def stream_access(
    request: Request,
    credentials: Credentials,
    bus: BusDep,
    ticket: str | None = Query(None, max_length=200, description="from POST /v1/alerts/ticket; opens the stream once"),
) -> None:
    """A bearer token (clients that can send headers) or a stream ticket (a browser's EventSource), used once."""
    if not ticket:
        require_read(request, credentials)
        return
    left_s = check_ticket(request.app.state.settings.api_token, ticket)
    try:  # bounded: a Redis that drops packets must not hold the request
        first_use = await asyncio.wait_for(bus.claim_once(f"ticket:{ticket}", left_s), CLAIM_TIMEOUT_S)
    except (RedisError, TimeoutError) as exc:  # the stream needs Redis too: say when to come back, never hang or 500
        raise Unavailable(f"alert bus unreachable ({type(exc).__name__}): try again shortly", retry_after_s=5) from exc
    if not first_use:
        raise Unauthorized("stream ticket already used: get a new one from POST /v1/alerts/ticket")


@router.post(
    "/ticket",
    response_model=Ticket,
    dependencies=[READ],
    summary=f"A ticket that opens the alert stream once, within {TICKET_TTL_S} s (EventSource cannot send a token)",
)
async def ticket(settings: SettingsDep) -> Ticket:
    assert settings.api_token  # create_app refuses to start without one
    return Ticket(ticket=issue_ticket(settings.api_token), expires_in=TICKET_TTL_S)


@router.get("", response_model=list[Alert], dependencies=[READ], summary="Alert history, oldest first")
async def history(
    bus: BusDep, after: str | None = Query(None, pattern=r"^\d+-\d+$"), limit: int = Query(100, ge=1, le=1000)
) -> list[Alert]:
    return unique(await bus.history(after, limit))  # an alert delivered twice (at least once) is listed once


@router.get(
    "/stream",
    dependencies=[Depends(stream_access)],
    responses={
        200: {
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
            "description": "events `alert` (data: an Alert as JSON) with ids, and heartbeats; "
            "`reconnect` (with a retry hint) when this client fell too far behind: "
            "reconnecting with Last-Event-ID replays what it missed",
        }
    },
    summary="Server-sent events: one 'alert' event per alert; reconnect with Last-Event-ID",
)
async def stream(
    bus: BusDep,
    metrics: MetricsDep,
    settings: SettingsDep,
    last_event_id: Annotated[str | None, Header(pattern=r"^\d+-\d+$")] = None,
    after: str | None = Query(None, pattern=r"^\d+-\d+$", description="same as Last-Event-ID"),
) -> EventSourceResponse:
    async def events():
        metrics.sse_clients.inc()
        try:
            async for alert in bus.subscribe(last_event_id or after):
                yield alert.sse_event()
        except SlowSubscriber as slow:  # fell too far behind: reconnect (EventSource does) and catch up by id
            yield {"event": "reconnect", "retry": RECONNECT_MS, "data": str(slow)}
        finally:
            metrics.sse_clients.dec()

    return EventSourceResponse(
        events(), ping=settings.sse_heartbeat_s, headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )
