"""Model freshness and quality watches: one alert when an episode starts, one 'resolved' when it ends.

Episode state lives in the database, so a restart neither repeats an open alert nor forgets one.
"""

from __future__ import annotations

import asyncio
import logging
import time

from sqlalchemy import select

from . import db
from .alerts import Alert

log = logging.getLogger(__name__)


class Watches:
    def __init__(self, engine, registry, bus, metrics, settings):
        self.engine, self.registry, self.bus, self.metrics, self.settings = engine, registry, bus, metrics, settings
        self._lock = asyncio.Lock()

    def _state(self) -> dict[str, dict]:
        with self.engine.connect() as conn:
            return {row.name: dict(row._mapping) for row in conn.execute(select(db.watch_state))}

    def _save(self, name: str, firing: bool, alert_id: str | None) -> None:
        with self.engine.begin() as conn:
            conn.execute(db.watch_state.delete().where(db.watch_state.c.name == name))
            conn.execute(db.watch_state.insert().values(name=name, firing=int(firing), since=time.time(),
                                                        alert_id=alert_id))

    async def evaluate(self) -> dict[str, tuple[bool, str]]:
        """Each watch's (firing, message) from MLflow now."""
        latest = await self.registry.latest()
        s = self.settings
        if latest is None:
            return {"model_stale": (True, f"no model {s.model_name!r} has been registered yet"),
                    "model_quality_low": (False, "no model yet"), "model_quality_suspicious": (False, "no model yet")}
        age_h = (time.time() - latest.trained_at.timestamp()) / 3600
        self.metrics.model_registered.set(latest.trained_at.timestamp())
        self.metrics.model_age.set(age_h * 3600)
        if latest.dice is not None:
            self.metrics.model_dice.set(latest.dice)
        dice = latest.dice if latest.dice is not None else float("nan")
        return {
            "model_stale": (age_h > s.model_stale_hours,
                            f"newest model {latest.name} v{latest.version} is {age_h:.1f} h old "
                            f"(limit {s.model_stale_hours:g} h)"),
            "model_quality_low": (dice < s.dice_floor,
                                  f"model v{latest.version} validation Dice {dice:.3f} (floor {s.dice_floor:g})"),
            "model_quality_suspicious": (dice > s.dice_ceiling,
                                         f"model v{latest.version} validation Dice {dice:.3f} is above "
                                         f"{s.dice_ceiling:g}: check for leakage or a broken validation split"),
        }

    async def check(self) -> list[Alert]:
        """Publish what changed since the last check; returns the alerts sent."""
        async with self._lock:  # the periodic loop and a finished run may check at once
            state = await asyncio.to_thread(self._state)
            sent = []
            for name, (firing, message) in (await self.evaluate()).items():
                was_firing = bool(state.get(name, {}).get("firing"))
                if firing == was_firing:
                    continue
                severity = "critical" if name == "model_quality_low" else "warning"
                alert = await self.bus.publish(Alert(type=name, state="firing" if firing else "resolved",
                                                     severity=severity if firing else "info", message=message))
                if firing:
                    self.metrics.alerts.labels(name).inc()
                await asyncio.to_thread(self._save, name, firing, alert.id)
                sent.append(alert)
            return sent
