"""Alert delivery: Redis (pub/sub for live delivery + a capped stream for history) or in-process.

Both buses give alerts an id, keep a history, and let a subscriber resume *after* an id it has
seen (SSE Last-Event-ID): subscribe first, replay the history after that id, then go live,
dropping anything already replayed, so a reconnecting browser misses nothing and sees nothing twice.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Literal

from pydantic import BaseModel, Field
from sqlalchemy import insert, select

from . import db

STREAM = "polyp:alerts"
CHANNEL = "polyp:alerts:live"


class Alert(BaseModel):
    id: str = ""
    type: str = Field(description="model_stale, model_quality_low, model_quality_suspicious, training_failed, ...")
    state: Literal["firing", "resolved", "info"] = "firing"
    severity: Literal["info", "warning", "critical"] = "warning"
    message: str
    at: float = Field(default_factory=time.time, description="unix time")
    details: dict = Field(default_factory=dict)


def _seq(alert_id: str) -> tuple[int, ...]:
    return tuple(int(part) for part in alert_id.split("-"))


class LocalBus:
    """No Redis (make up): history in the service's database, live delivery through asyncio queues."""

    kind = "in-process"

    def __init__(self, engine, history_max: int = 10000):
        self.engine, self.history_max = engine, history_max
        self._subscribers: set[asyncio.Queue] = set()

    def _store(self, alert: Alert) -> Alert:
        with self.engine.begin() as conn:
            seq = conn.execute(insert(db.alerts).values(body={})).inserted_primary_key[0]
            alert = alert.model_copy(update={"id": f"0-{seq}"})
            conn.execute(db.alerts.update().where(db.alerts.c.seq == seq).values(body=alert.model_dump()))
            conn.execute(db.alerts.delete().where(db.alerts.c.seq <= seq - self.history_max))
        return alert

    async def publish(self, alert: Alert) -> Alert:
        alert = await asyncio.to_thread(self._store, alert)
        for queue in list(self._subscribers):
            queue.put_nowait(alert)
        return alert

    def _history(self, after: str | None, limit: int) -> list[Alert]:
        query = select(db.alerts.c.body)
        if after:
            query = query.where(db.alerts.c.seq > _seq(after)[-1]).order_by(db.alerts.c.seq).limit(limit)
            with self.engine.connect() as conn:
                return [Alert(**row.body) for row in conn.execute(query)]
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(db.alerts.c.seq.desc()).limit(limit)).all()
        return [Alert(**row.body) for row in reversed(rows)]

    async def history(self, after: str | None = None, limit: int = 100) -> list[Alert]:
        return await asyncio.to_thread(self._history, after, limit)

    async def subscribe(self, after: str | None = None) -> AsyncIterator[Alert]:
        queue: asyncio.Queue = asyncio.Queue()
        self._subscribers.add(queue)
        try:
            last = _seq(after) if after else None
            if after:
                for alert in await self.history(after, limit=self.history_max):
                    last = _seq(alert.id)
                    yield alert
            while True:
                alert = await queue.get()
                if last is None or _seq(alert.id) > last:
                    last = _seq(alert.id)
                    yield alert
        finally:
            self._subscribers.discard(queue)

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        pass


class RedisBus:
    """XADD to a capped stream (history, replay) and PUBLISH the same alert (live fan-out)."""

    kind = "redis"

    def __init__(self, url: str, history_max: int = 10000):
        import redis.asyncio as redis

        self.redis = redis.from_url(url, decode_responses=True, health_check_interval=30)
        self.history_max = history_max

    async def publish(self, alert: Alert) -> Alert:
        # The id is Redis's stream id; the stream is capped (approximately) at history_max entries.
        provisional = alert.model_copy(update={"id": ""})
        stream_id = await self.redis.xadd(STREAM, {"alert": provisional.model_dump_json()},
                                          maxlen=self.history_max, approximate=True)
        alert = provisional.model_copy(update={"id": stream_id})
        await self.redis.publish(CHANNEL, alert.model_dump_json())
        return alert

    @staticmethod
    def _from_entry(entry_id: str, fields: dict) -> Alert:
        return Alert(**{**json.loads(fields["alert"]), "id": entry_id})

    async def history(self, after: str | None = None, limit: int = 100) -> list[Alert]:
        if after:
            entries = await self.redis.xrange(STREAM, min=f"({after}", max="+", count=limit)
            return [self._from_entry(i, f) for i, f in entries]
        entries = await self.redis.xrevrange(STREAM, max="+", min="-", count=limit)
        return [self._from_entry(i, f) for i, f in reversed(entries)]

    async def subscribe(self, after: str | None = None) -> AsyncIterator[Alert]:
        pubsub = self.redis.pubsub()
        await pubsub.subscribe(CHANNEL)  # before the replay: nothing published meanwhile is lost
        try:
            last = _seq(after) if after else None
            if after:
                while True:
                    page = await self.history(after if last is None else "-".join(map(str, last)), limit=1000)
                    for alert in page:
                        last = _seq(alert.id)
                        yield alert
                    if len(page) < 1000:
                        break
            async for message in pubsub.listen():
                if message.get("type") != "message":
                    continue
                alert = Alert.model_validate_json(message["data"])
                if last is None or _seq(alert.id) > last:
                    last = _seq(alert.id)
                    yield alert
        finally:
            await pubsub.unsubscribe(CHANNEL)
            await pubsub.aclose()

    async def ping(self) -> bool:
        try:
            return bool(await self.redis.ping())
        except Exception:  # noqa: BLE001 - any failure means not reachable
            return False

    async def close(self) -> None:
        await self.redis.aclose()


def make_bus(redis_url: str | None, engine, history_max: int) -> LocalBus | RedisBus:
    return RedisBus(redis_url, history_max) if redis_url else LocalBus(engine, history_max)


def new_id() -> str:
    return uuid.uuid4().hex
