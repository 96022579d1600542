"""Alert delivery: Redis (a capped stream: history, and live delivery by XREAD) or in-process.

Both buses give alerts an id, keep a history, and let a subscriber resume *after* an id it has
seen (SSE Last-Event-ID): subscribe first, replay the history after that id, then go live,
dropping anything already replayed, so a reconnecting browser misses nothing and sees nothing twice.
Each process reads the stream once (from the last id it saw, so a Redis outage loses nothing) and
fans out to bounded per-client queues: a client that falls that far behind is told to reconnect
(SlowSubscriber) and catches up from its Last-Event-ID, instead of holding memory without limit.
The bus also records what may be used once (claim_once: stream tickets), where every replica sees it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator
from typing import Any, Literal

from pydantic import BaseModel, Field, PrivateAttr
from sqlalchemy import Engine, insert, select

from . import db
from .errors import SlowSubscriber

log = logging.getLogger(__name__)
STREAM = "polyp:alerts"
CLAIMS = "polyp:claimed:"  # keys of one-time things (stream tickets), each with its expiry
CLIENT_QUEUE_MAX = 1000  # alerts waiting for one SSE client; beyond, it reconnects and replays
READ_BLOCK_S = 5.0  # one XREAD waits this long for new alerts before asking again


class Alert(BaseModel):
    id: str = Field("", description="the bus's id: the SSE event id, and the position Last-Event-ID resumes after")
    key: str = Field(
        default_factory=lambda: uuid.uuid4().hex,
        description="stable, the same if the alert is delivered twice (at-least-once): drop a key already seen",
    )
    type: str = Field(description="model_stale, model_quality_low, model_quality_suspicious, training_failed, ...")
    state: Literal["firing", "resolved", "info"] = "firing"
    severity: Literal["info", "warning", "critical"] = "warning"
    message: str
    at: float = Field(default_factory=time.time, description="unix time")
    details: dict = Field(default_factory=dict)
    _json: str | None = PrivateAttr(default=None)
    _sse: bytes | None = PrivateAttr(default=None)

    def json_text(self) -> str:
        """Serialised once, however many SSE clients it goes to."""
        if self._json is None:
            self._json = self.model_dump_json()
        return self._json

    def sse_event(self) -> bytes:
        """The whole SSE event (id, event `alert`, data), encoded once for every client of this process."""
        if self._sse is None:
            from sse_starlette import ServerSentEvent

            self._sse = ServerSentEvent(self.json_text(), event="alert", id=self.id).encode()
        return self._sse


def _seq(alert_id: str) -> tuple[int, ...]:
    return tuple(int(part) for part in alert_id.split("-"))


def _entry_id(seq: tuple[int, ...]) -> str:
    return "-".join(map(str, seq))


class RecentKeys:
    """The keys of the last `size` alerts seen: a duplicate delivery comes soon after the first."""

    def __init__(self, size: int = 1000):
        self._order: deque[str] = deque(maxlen=size)
        self._keys: set[str] = set()

    def first_time(self, key: str) -> bool:
        if key in self._keys:
            return False
        if len(self._order) == self._order.maxlen:
            self._keys.discard(self._order[0])
        self._order.append(key)
        self._keys.add(key)
        return True


def unique(alerts: list[Alert]) -> list[Alert]:
    """Each alert once, at its first delivery."""
    keys = RecentKeys(len(alerts) or 1)
    return [alert for alert in alerts if keys.first_time(alert.key)]


class _Subscriber:
    def __init__(self, limit: int):
        self.queue: asyncio.Queue = asyncio.Queue(maxsize=limit)
        self.overflowed = False


class _FanOut:
    """Local subscribers of a bus. One upstream feed per process is fanned out to every SSE client's queue."""

    history_max: int

    def __init__(self, client_queue_max: int = CLIENT_QUEUE_MAX):
        self._subscribers: set[_Subscriber] = set()
        self.client_queue_max = client_queue_max

    def _deliver(self, alert: Alert) -> None:
        for subscriber in list(self._subscribers):
            try:
                subscriber.queue.put_nowait(alert)
            except asyncio.QueueFull:  # it stops receiving here; its generator tells it to reconnect
                subscriber.overflowed = True
                self._subscribers.discard(subscriber)

    async def _listening(self) -> None:
        """Return once live alerts reach _deliver (subclasses with an upstream feed override)."""

    async def history(self, after: str | None = None, limit: int = 100) -> list[Alert]:
        raise NotImplementedError

    async def subscribe(self, after: str | None = None) -> AsyncIterator[Alert]:
        """Alerts after `after` (replayed), then live ones; SlowSubscriber when this subscriber fell
        `client_queue_max` alerts behind (reconnect with the last id received)."""
        subscriber = _Subscriber(self.client_queue_max)
        queue = subscriber.queue
        self._subscribers.add(subscriber)  # before the replay: nothing published meanwhile is lost
        try:
            await self._listening()
            last = _seq(after) if after else None
            keys = RecentKeys()
            while last is not None:
                page = await self.history(_entry_id(last), limit=1000)
                for alert in page:
                    last = _seq(alert.id)
                    if keys.first_time(alert.key):
                        yield alert
                if len(page) < 1000:
                    break
            while True:
                if subscriber.overflowed and queue.empty():
                    raise SlowSubscriber(
                        f"more than {self.client_queue_max} alerts behind: reconnect after "
                        f"{_entry_id(last) if last else 'the last id received'}"
                    )
                alert = await queue.get()
                if last is None or _seq(alert.id) > last:  # replayed already: skip
                    last = _seq(alert.id)
                    if keys.first_time(alert.key):  # a second delivery of one alert (the outbox's at-least-once)
                        yield alert
        finally:
            self._subscribers.discard(subscriber)


class LocalBus(_FanOut):
    """No Redis (make up): history in the service's database, live delivery within this process."""

    kind = "in-process"

    def __init__(self, engine: Engine, history_max: int = 10000, client_queue_max: int = CLIENT_QUEUE_MAX):
        super().__init__(client_queue_max)
        self.engine, self.history_max = engine, history_max
        self._claimed: dict[str, float] = {}

    def _store(self, alert: Alert) -> Alert:
        with self.engine.begin() as conn:
            inserted = conn.execute(insert(db.alerts).values(body={})).inserted_primary_key
            assert inserted is not None  # an INSERT always has one
            seq = inserted[0]
            alert = alert.model_copy(update={"id": f"0-{seq}"})
            conn.execute(db.alerts.update().where(db.alerts.c.seq == seq).values(body=alert.model_dump()))
            conn.execute(db.alerts.delete().where(db.alerts.c.seq <= seq - self.history_max))
        return alert

    async def publish(self, alert: Alert) -> Alert:
        alert = await asyncio.to_thread(self._store, alert)
        self._deliver(alert)
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

    async def claim_once(self, key: str, ttl_s: int) -> bool:
        """True the first time `key` is claimed within ttl_s (one process: make up has one replica)."""
        now = time.monotonic()
        self._claimed = {k: t for k, t in self._claimed.items() if t > now}
        if key in self._claimed:
            return False
        self._claimed[key] = now + ttl_s
        return True

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        pass


class RedisBus(_FanOut):
    """XADD to a capped stream: history and replay (XRANGE), and live delivery (XREAD).

    Each process holds one reader of the stream, however many SSE clients it serves; it reads on from the
    last id it saw, so alerts published while Redis was unreachable to it are delivered once it is back.
    """

    kind = "redis"

    def __init__(self, url: str, history_max: int = 10000, client_queue_max: int = CLIENT_QUEUE_MAX, timeout_s: float = 5.0):
        super().__init__(client_queue_max)
        self.redis: Any = _client(url, timeout_s)
        # The reader blocks in XREAD for READ_BLOCK_S: its socket may wait that long and a timeout more.
        self.reader: Any = _client(url, READ_BLOCK_S + timeout_s)
        self.history_max = history_max
        self._listener: asyncio.Task | None = None
        self._subscribed = asyncio.Event()

    async def publish(self, alert: Alert) -> Alert:
        # The id is Redis's stream id; the stream is capped (approximately) at history_max entries.
        provisional = alert.model_copy(update={"id": ""})
        stream_id = await self.redis.xadd(
            STREAM, {"alert": provisional.model_dump_json()}, maxlen=self.history_max, approximate=True
        )
        return provisional.model_copy(update={"id": stream_id})

    @staticmethod
    def _from_entry(entry_id: str, fields: dict) -> Alert:
        return Alert(**{**json.loads(fields["alert"]), "id": entry_id})

    async def history(self, after: str | None = None, limit: int = 100) -> list[Alert]:
        if after:
            entries = await self.redis.xrange(STREAM, min=f"({after}", max="+", count=limit)
            return [self._from_entry(i, f) for i, f in entries]
        entries = await self.redis.xrevrange(STREAM, max="+", min="-", count=limit)
        return [self._from_entry(i, f) for i, f in reversed(entries)]

    async def _listening(self) -> None:
        if self._listener is None or self._listener.done():
            self._subscribed.clear()
            self._listener = asyncio.get_running_loop().create_task(self._listen())
        await asyncio.wait_for(self._subscribed.wait(), 10)

    async def _listen(self) -> None:
        """The process's one reader: XREAD from the newest entry when it starts, then on from the last id it
        delivered; on a Redis outage it retries with backoff and resumes from that id."""
        delay, last_id = 0.5, None
        while True:
            try:
                if last_id is None:
                    newest = await self.redis.xrevrange(STREAM, max="+", min="-", count=1)
                    last_id = newest[0][0] if newest else "0-0"
                self._subscribed.set()
                delay = 0.5
                while True:
                    for _, entries in (
                        await self.reader.xread({STREAM: last_id}, block=round(READ_BLOCK_S * 1000), count=500) or []
                    ):
                        for entry_id, fields in entries:
                            self._deliver(self._from_entry(entry_id, fields))
                            last_id = entry_id
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - Redis away: retry, and read on from last_id
                log.warning("alert stream reader lost Redis; retrying in %.1f s from %s", delay, last_id)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10)

    async def claim_once(self, key: str, ttl_s: int) -> bool:
        """True the first time `key` is claimed within ttl_s, across every replica (SET NX with expiry)."""
        return bool(await self.redis.set(f"{CLAIMS}{key}", "1", nx=True, ex=ttl_s))

    async def ping(self) -> bool:
        try:
            return bool(await self.redis.ping())
        except Exception:  # noqa: BLE001 - any failure means not reachable
            return False

    async def close(self) -> None:
        if self._listener:
            self._listener.cancel()
        await self.redis.aclose()
        await self.reader.aclose()


def _client(url: str, timeout_s: float) -> Any:
    """A Redis client whose every command ends within timeout_s: connect and read timeouts, and TCP keepalive so a
    half-open connection (after a failover) is noticed. A dropped connection is retried a few times before a call
    fails. Any: redis-py types every reply as a union of bytes, str and None; with decode_responses they are str."""
    import redis.asyncio as redis
    from redis.asyncio.retry import Retry
    from redis.backoff import ExponentialBackoff
    from redis.exceptions import ConnectionError, TimeoutError

    return redis.from_url(
        url,
        decode_responses=True,
        socket_connect_timeout=timeout_s,
        socket_timeout=timeout_s,
        socket_keepalive=True,
        health_check_interval=30,
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), 3),
        retry_on_error=[ConnectionError, TimeoutError],
    )


AlertBus = LocalBus | RedisBus


def make_bus(redis_url: str | None, engine: Engine, history_max: int, timeout_s: float = 5.0) -> AlertBus:
    """Redis when configured (replicas share alerts), else in-process."""
    return RedisBus(redis_url, history_max, timeout_s=timeout_s) if redis_url else LocalBus(engine, history_max)
