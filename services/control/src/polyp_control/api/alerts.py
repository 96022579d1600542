"""/v1/alerts: history, and the live SSE stream with Last-Event-ID replay."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query
from sse_starlette.sse import EventSourceResponse

from ..alerts import Alert
from .deps import BusDep, MetricsDep, SettingsDep

router = APIRouter(prefix="/v1/alerts", tags=["alerts"])


@router.get("", response_model=list[Alert], summary="Alert history, oldest first")
async def history(bus: BusDep, after: str | None = Query(None, pattern=r"^\d+-\d+$"),
                  limit: int = Query(100, ge=1, le=1000)) -> list[Alert]:
    return await bus.history(after, limit)


@router.get("/stream", summary="Server-sent events: one 'alert' event per alert; reconnect with Last-Event-ID")
async def stream(bus: BusDep, metrics: MetricsDep, settings: SettingsDep,
                 last_event_id: Annotated[str | None, Header(pattern=r"^\d+-\d+$")] = None,
                 after: str | None = Query(None, pattern=r"^\d+-\d+$", description="same as Last-Event-ID")):
    async def events():
        metrics.sse_clients.inc()
        try:
            async for alert in bus.subscribe(last_event_id or after):
                yield {"id": alert.id, "event": "alert", "data": alert.json_text()}
        finally:
            metrics.sse_clients.dec()

    return EventSourceResponse(events(), ping=settings.sse_heartbeat_s,
                               headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
