"""The watches as the service runs them: managed over /v1/watches, evaluated by the lease holder, alerting once
per episode (store.py decides which replica records a change; only that one publishes)."""

from __future__ import annotations

import asyncio
import builtins
import logging
import time

from sqlalchemy import Engine

from .. import db
from ..alerts import Alert
from ..errors import DefaultWatch, Unavailable
from ..metrics import Metrics
from ..outbox import Outbox
from ..registry import ModelRegistry
from ..settings import Settings
from .evaluation import Targets, evaluate
from .schemas import SERVED, Verdict, Watch, WatchSpec, default_specs
from .store import Row, WatchStore

log = logging.getLogger(__name__)
CHECK_RETRY_S = 60  # a watch that could not be checked (MLflow away) is tried again after this, or its interval if shorter


class Watches:
    def __init__(self, engine: Engine, registry: ModelRegistry, outbox: Outbox, metrics: Metrics, settings: Settings):
        self.store = WatchStore(engine)
        self.registry, self.outbox, self.metrics, self.settings = registry, outbox, metrics, settings
        self._lock = asyncio.Lock()

    # --- management (the API) -------------------------------------------------------------------------------

    def ensure_defaults(self) -> None:
        """The environment's watches: created on first start, kept equal to the settings until edited (PUT). One
        replica at a time: replicas starting at once on a new database each inserted them, and all but one failed."""
        with db.startup_lock(self.store.engine):
            self.store.ensure_defaults(default_specs(self.settings))

    def create(self, spec: WatchSpec) -> Watch:
        return self.store.create(spec)

    def list(self) -> list[Watch]:
        return self.store.list()

    def get(self, watch_id: str) -> Watch:
        return self.store.get(watch_id)

    def replace(self, watch_id: str, spec: WatchSpec) -> Watch:
        return self.store.replace(watch_id, spec)

    def set_paused(self, watch_id: str, paused: bool) -> Watch:
        return self.store.set_paused(watch_id, paused)

    async def delete(self, watch_id: str) -> None:
        """Remove a watch; an open episode is resolved first, so no alert is left firing for ever."""
        row = await asyncio.to_thread(self.store.row, watch_id)
        if row.managed_by == "settings":
            raise DefaultWatch(
                f"{watch_id!r} is a default following the environment settings: pause it, or edit it "
                "(PUT) to take it over, then delete it"
            )
        if row.firing:
            resolved = self._alert(
                row, Verdict(firing=False, alert_type=row.alert_type or "watch", message=f"watch {watch_id} deleted")
            )
            if await asyncio.to_thread(self.store.transition, row, False, None, "watch deleted", time.time(), [resolved]):
                await self._send([resolved])
        await asyncio.to_thread(self.store.delete, watch_id)

    # --- evaluation (the lease holder) ----------------------------------------------------------------------

    async def check(self, due_only: bool = False) -> builtins.list[Alert]:
        """Evaluate the watches (those due, or all that are not paused); returns the alerts sent."""
        async with self._lock:  # the periodic loop and a finished run may check at once
            now = time.time()
            sent: builtins.list[Alert] = []
            targets: Targets = {}  # one registry lookup per target per round, however many watches share it
            for row in await asyncio.to_thread(self.store.due, due_only, now):
                try:
                    sent += await self.check_one(row, now, targets)
                except Exception as exc:  # one failing watch (MLflow down) must not stop the others
                    retry_s = min(WatchSpec(**row.spec).interval_s, CHECK_RETRY_S)
                    if isinstance(exc, Unavailable):  # expected while a dependency is away: one line, no traceback
                        log.warning("watch %s not checked: %s; next try in %.0f s", row.id, exc, retry_s)
                    else:
                        log.exception("watch %s not checked; next try in %.0f s", row.id, retry_s)
                    await asyncio.to_thread(self.store.postpone, row.id, now + retry_s)
            served = targets.get(SERVED)
            if served is not None:
                self.metrics.export_served_model(served)
            return sent

    async def check_one(self, row: Row, now: float, targets: Targets | None = None) -> builtins.list[Alert]:
        """Evaluate one watch as read in `row`; its alerts are staged with the transition and sent only if this
        replica's conditional write wins."""
        spec = WatchSpec(**row.spec)
        verdict = await evaluate(spec, self.registry, self.store, targets)
        alerts: builtins.list[Alert] = []
        switched = row.firing and verdict.firing and row.alert_type not in (None, verdict.alert_type)
        if bool(row.firing) != verdict.firing or switched:  # e.g. a quality episode from below-floor to above-ceiling
            if switched:
                alerts.append(
                    self._alert(
                        row, Verdict(firing=False, alert_type=row.alert_type, message=verdict.message, value=verdict.value)
                    )
                )
            alerts.append(self._alert(row, verdict, spec.severity))
            if not await asyncio.to_thread(self.store.transition, row, verdict.firing, verdict, verdict.message, now, alerts):
                return []  # another replica recorded this transition first, and sends its alerts
            alerts = await self._send(alerts)
            row = await asyncio.to_thread(self.store.row, row.id)
        await asyncio.to_thread(self.store.checked, row, verdict, now, spec.interval_s)
        return alerts

    def _alert(self, row: Row, verdict: Verdict, severity: str = "info") -> Alert:
        return Alert(
            type=verdict.alert_type,
            state="firing" if verdict.firing else "resolved",
            severity=severity if verdict.firing else "info",
            message=verdict.message,
            details={"watch_id": row.id, "value": verdict.value},
        )

    async def _send(self, alerts: builtins.list[Alert]) -> builtins.list[Alert]:
        """Publish alerts staged with their transition; as published, or as staged when the bus is away (the outbox
        relay sends them later)."""
        sent = []
        for alert in alerts:
            if alert.state == "firing":
                self.metrics.alerts.labels(alert.type).inc()
            sent.append(await self.outbox.send(alert) or alert)
        return sent
