"""The watches as the service runs them: managed over /v1/watches, evaluated by the lease holder, alerting once
per episode (store.py decides which replica records a change; only that one publishes)."""

from __future__ import annotations

import asyncio
import builtins
import logging
import time

from sqlalchemy import Engine

from ..alerts import Alert, AlertBus
from ..errors import DefaultWatch
from ..metrics import Metrics
from ..registry import ModelRegistry
from ..settings import Settings
from .evaluation import Targets, evaluate
from .schemas import SERVED, Verdict, Watch, WatchSpec, default_specs
from .store import Row, WatchStore

log = logging.getLogger(__name__)


class Watches:
    def __init__(self, engine: Engine, registry: ModelRegistry, bus: AlertBus, metrics: Metrics, settings: Settings):
        self.store = WatchStore(engine)
        self.registry, self.bus, self.metrics, self.settings = registry, bus, metrics, settings
        self._lock = asyncio.Lock()

    # --- management (the API) -------------------------------------------------------------------------------

    def ensure_defaults(self) -> None:
        """The environment's watches: created on first start, kept equal to the settings until edited (PUT)."""
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
        if row.firing and await asyncio.to_thread(self.store.transition, row, False, None, "watch deleted", time.time()):
            await self._publish(
                row, Verdict(firing=False, alert_type=row.alert_type or "watch", message=f"watch {watch_id} deleted")
            )
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
                except Exception:
                    log.exception("watch %s", row.id)  # one failing watch (MLflow down) must not stop the others
            served = targets.get(SERVED)
            if served is not None:
                self.metrics.export_served_model(served)
            return sent

    async def check_one(self, row: Row, now: float, targets: Targets | None = None) -> builtins.list[Alert]:
        """Evaluate one watch as read in `row`; publish only if this replica's conditional write wins."""
        spec = WatchSpec(**row.spec)
        verdict = await evaluate(spec, self.registry, self.store, targets)
        sent = []
        switched = row.firing and verdict.firing and row.alert_type not in (None, verdict.alert_type)
        if bool(row.firing) != verdict.firing or switched:  # e.g. a quality episode from below-floor to above-ceiling
            if not await asyncio.to_thread(self.store.transition, row, verdict.firing, verdict, verdict.message, now):
                return []  # another replica recorded this transition first, and publishes it
            if switched:
                resolved = Verdict(firing=False, alert_type=row.alert_type, message=verdict.message, value=verdict.value)
                sent.append(await self._publish(row, resolved))
            sent.append(await self._publish(row, verdict, spec.severity))
            row = await asyncio.to_thread(self.store.row, row.id)
        await asyncio.to_thread(self.store.checked, row, verdict, now, spec.interval_s)
        return sent

    async def _publish(self, row: Row, verdict: Verdict, severity: str = "info") -> Alert:
        alert = await self.bus.publish(
            Alert(
                type=verdict.alert_type,
                state="firing" if verdict.firing else "resolved",
                severity=severity if verdict.firing else "info",
                message=verdict.message,
                details={"watch_id": row.id, "value": verdict.value},
            )
        )
        await asyncio.to_thread(self.store.alerted, row.id, alert.id)
        if verdict.firing:
            self.metrics.alerts.labels(verdict.alert_type).inc()
        return alert
