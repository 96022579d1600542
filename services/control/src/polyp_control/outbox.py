"""Alerts at least once: an alert is written to the outbox in the same transaction as the state change it reports
(a run closed, a watch's episode opened or resolved), then published to the bus and removed from the outbox.

A crash or a bus (Redis) outage between the two leaves the alert in the outbox, and the relay (the lease holder's
loop) publishes it later, so no alert is lost. A crash after publishing and before the removal publishes it twice:
each alert has a stable `key`, and SSE clients, the page and the history drop a key they have seen.
"""

from __future__ import annotations

import asyncio
import logging
import time

from sqlalchemy import Connection, Engine, delete, insert, select

from . import db
from .alerts import Alert, AlertBus

log = logging.getLogger(__name__)
RELAY_GRACE_S = 5.0  # the replica that staged an alert publishes it at once; the relay takes what is older


def stage(conn: Connection, alert: Alert) -> None:
    """Add `alert` to the outbox within the caller's transaction: it commits, or rolls back, with the state change."""
    conn.execute(insert(db.alert_outbox).values(key=alert.key, body=alert.model_dump(mode="json"), created_at=time.time()))


class Outbox:
    def __init__(self, engine: Engine, bus: AlertBus):
        self.engine, self.bus = engine, bus

    async def send(self, alert: Alert) -> Alert | None:
        """Publish a staged alert and take it out of the outbox; None when the bus failed (the relay tries again)."""
        try:
            published = await self.bus.publish(alert)
        except Exception as exc:  # noqa: BLE001 - Redis away: the alert waits in the outbox
            log.warning("alert %s (%s) stays in the outbox: %s", alert.key, alert.type, exc)
            return None
        await asyncio.to_thread(self._remove, alert.key)
        return published

    async def relay(self, older_than_s: float = RELAY_GRACE_S) -> None:
        """Publish, oldest first, what a crash or an outage left in the outbox; stops at the first failure."""
        for alert in await asyncio.to_thread(self._pending, time.time() - older_than_s):
            if await self.send(alert) is None:
                break
            log.info("relayed alert %s (%s) from the outbox", alert.key, alert.type)

    def _pending(self, before: float) -> list[Alert]:
        query = select(db.alert_outbox.c.body).where(db.alert_outbox.c.created_at < before).order_by(db.alert_outbox.c.created_at)
        with self.engine.connect() as conn:
            return [Alert(**row.body) for row in conn.execute(query.limit(500))]

    def _remove(self, key: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(db.alert_outbox).where(db.alert_outbox.c.key == key))
