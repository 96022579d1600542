"""Watches: persisted checks of the served model and of training runs, managed over /v1/watches.

A watch names its target (a registered model version by alias, default `champion`: the version the
platform serves, or by number), a check (freshness, quality, run_failures), its own interval and
severity. The lease holder evaluates the watches that are due; each one sends one alert when an
episode starts and one when it resolves, both carrying the watch id. The transition is a conditional
write (UPDATE … WHERE firing = <what this replica read>), so of two replicas racing only one publishes,
and a restart neither repeats an open alert nor forgets one.

The environment's three watches (MODEL_STALE_HOURS, DICE_FLOOR, DICE_CEILING: the chart's values) are
created on first start and follow those settings on every start, until edited through the API.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import func, select, update

from . import db
from .alerts import Alert
from .errors import NotFound

log = logging.getLogger(__name__)

SERVED = "champion"  # the alias training moves to a version that passed the gate and was published
TARGET_PATTERN = r"^([1-9][0-9]{0,8}|[A-Za-z][A-Za-z0-9_-]{0,63})$"


class Freshness(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    kind: Literal["freshness"]
    max_age_hours: float = Field(gt=0, le=24 * 366, description="fires when the target version is older")


class Quality(BaseModel):
    # "A floor, a ceiling or both", in the schema too; floor < ceiling is a rule between two fields JSON Schema
    # cannot state (the validator says it).
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "anyOf": [
                {"required": ["floor"], "properties": {"floor": {"type": "number"}}},
                {"required": ["ceiling"], "properties": {"ceiling": {"type": "number"}}},
            ]
        },
    )
    kind: Literal["quality"]
    metric: str = Field(
        "val_dice",
        pattern=r"^[A-Za-z0-9_.-]{1,100}$",
        description="a numeric tag of the model version (training records val_dice)",
    )
    floor: float | None = Field(None, ge=0, le=1, description="fires below this")
    ceiling: float | None = Field(None, ge=0, le=1, description="fires above this (leakage, a broken split)")

    @model_validator(mode="after")
    def _a_bound(self):
        if self.floor is None and self.ceiling is None:
            raise ValueError("a quality check needs a floor, a ceiling or both")
        if self.floor is not None and self.ceiling is not None and self.floor >= self.ceiling:
            raise ValueError(f"floor {self.floor} must be below ceiling {self.ceiling}")
        return self


class RunFailures(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    kind: Literal["run_failures"]
    count: int = Field(ge=1, le=10_000, description="fires when at least this many runs failed ...")
    window_hours: float = Field(gt=0, le=24 * 366, description="... within this many hours")


Check = Annotated[Freshness | Quality | RunFailures, Field(discriminator="kind")]


class WatchSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    description: str = Field("", max_length=500)
    target: str = Field(
        SERVED,
        pattern=TARGET_PATTERN,
        description="model version alias (champion: the served one) or version number; run_failures ignores it",
    )
    check: Check
    interval_s: float = Field(60, ge=5, le=86400, description="how often the watch is evaluated")
    severity: Literal["info", "warning", "critical"] = "warning"

    @field_validator("target", mode="before")
    @classmethod
    def _version_number_as_text(cls, value):
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class WatchState(BaseModel):
    status: Literal["pending", "ok", "firing"] = Field(description="pending: not evaluated yet")
    since: float | None = Field(None, description="unix time the current status began")
    last_checked: float | None = None
    last_value: float | None = Field(None, description="age in hours, metric value or failed runs")
    message: str | None = None


class Watch(WatchSpec):
    id: str
    paused: bool
    managed_by: Literal["settings", "api"] = Field(
        description="settings: a default following the environment settings (MODEL_STALE_HOURS, DICE_FLOOR, DICE_CEILING)"
    )
    created_at: float
    updated_at: float
    state: WatchState


class WatchNotFound(NotFound):
    pass


class DefaultWatch(ValueError):
    """Deleting a default: it follows the environment's settings; pause it instead."""


def default_specs(settings) -> dict[str, tuple[WatchSpec, str]]:
    """The environment's watches, by id, with the alert type the earlier fixed watches used (state migrates)."""
    every = max(5.0, min(settings.watch_interval_s, 86400))
    return {
        "model-freshness": (
            WatchSpec(
                description="the served model is fresh",
                interval_s=every,
                check=Freshness(kind="freshness", max_age_hours=settings.model_stale_hours),
            ),
            "model_stale",
        ),
        "model-quality-floor": (
            WatchSpec(
                description="the served model's validation Dice is above the floor",
                severity="critical",
                interval_s=every,
                check=Quality(kind="quality", floor=settings.dice_floor),
            ),
            "model_quality_low",
        ),
        "model-quality-ceiling": (
            WatchSpec(
                description="the served model's validation Dice is not suspiciously high",
                interval_s=every,
                check=Quality(kind="quality", ceiling=settings.dice_ceiling),
            ),
            "model_quality_suspicious",
        ),
    }


class Verdict(BaseModel):
    firing: bool
    alert_type: str
    message: str
    value: float | None = None


class Watches:
    def __init__(self, engine, registry, bus, metrics, settings):
        self.engine, self.registry, self.bus, self.metrics, self.settings = engine, registry, bus, metrics, settings
        self._lock = asyncio.Lock()

    # --- storage -------------------------------------------------------------------------------------------

    def _row(self, watch_id: str):
        with self.engine.connect() as conn:
            row = conn.execute(select(db.watches).where(db.watches.c.id == watch_id)).first()
        if row is None:
            raise WatchNotFound(f"no watch {watch_id!r}")
        return row

    @staticmethod
    def _watch(row) -> Watch:
        status = "firing" if row.firing else "pending" if row.last_checked is None else "ok"
        return Watch(
            **row.spec,
            id=row.id,
            paused=bool(row.paused),
            managed_by=row.managed_by,
            created_at=row.created_at,
            updated_at=row.updated_at,
            state=WatchState(
                status=status, since=row.since, last_checked=row.last_checked, last_value=row.last_value, message=row.message
            ),
        )

    def ensure_defaults(self) -> None:
        """Create the environment's watches on first start; keep those not edited through the API equal to the
        settings. An episode the earlier fixed watches had open carries over."""
        now = time.time()
        with self.engine.begin() as conn:
            old_state = {row.name: row for row in conn.execute(select(db.watch_state))}
            for watch_id, (spec, alert_type) in default_specs(self.settings).items():
                row = conn.execute(select(db.watches).where(db.watches.c.id == watch_id)).first()
                if row is None:
                    episode = old_state.get(alert_type)
                    conn.execute(
                        db.watches.insert().values(
                            id=watch_id,
                            spec=spec.model_dump(),
                            managed_by="settings",
                            paused=0,
                            created_at=now,
                            updated_at=now,
                            next_check=0,
                            firing=int(bool(episode and episode.firing)),
                            since=episode.since if episode else None,
                            alert_type=alert_type if episode else None,
                            alert_id=episode.alert_id if episode else None,
                        )
                    )
                elif row.managed_by == "settings" and row.spec != spec.model_dump():
                    conn.execute(
                        update(db.watches)
                        .where(db.watches.c.id == watch_id)
                        .values(spec=spec.model_dump(), updated_at=now, next_check=0)
                    )

    def create(self, spec: WatchSpec) -> Watch:
        now = time.time()
        watch_id = f"w-{uuid.uuid4().hex[:12]}"
        with self.engine.begin() as conn:
            conn.execute(
                db.watches.insert().values(
                    id=watch_id,
                    spec=spec.model_dump(),
                    managed_by="api",
                    paused=0,
                    created_at=now,
                    updated_at=now,
                    next_check=0,
                    firing=0,
                )
            )
        return self.get(watch_id)

    def list(self) -> list[Watch]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(db.watches).order_by(db.watches.c.created_at, db.watches.c.id)).all()
        return [self._watch(row) for row in rows]

    def get(self, watch_id: str) -> Watch:
        return self._watch(self._row(watch_id))

    def replace(self, watch_id: str, spec: WatchSpec) -> Watch:
        """A new spec; a default edited here stops following the settings. An open episode stays open until
        the next evaluation (due at once) says otherwise."""
        self._row(watch_id)
        with self.engine.begin() as conn:
            conn.execute(
                update(db.watches)
                .where(db.watches.c.id == watch_id)
                .values(spec=spec.model_dump(), managed_by="api", updated_at=time.time(), next_check=0)
            )
        return self.get(watch_id)

    def set_paused(self, watch_id: str, paused: bool) -> Watch:
        """A paused watch is not evaluated: an open episode stays open, silently, until it is resumed."""
        self._row(watch_id)
        with self.engine.begin() as conn:
            conn.execute(
                update(db.watches)
                .where(db.watches.c.id == watch_id)
                .values(paused=int(paused), updated_at=time.time(), next_check=0)
            )
        return self.get(watch_id)

    async def delete(self, watch_id: str) -> None:
        """Remove a watch; an open episode is resolved first, so no alert is left firing for ever."""
        row = await asyncio.to_thread(self._row, watch_id)
        if row.managed_by == "settings":
            raise DefaultWatch(
                f"{watch_id!r} is a default following the environment settings: pause it, or edit it "
                "(PUT) to take it over, then delete it"
            )
        if row.firing and await asyncio.to_thread(self._transition, row, False, None, "watch deleted", time.time()):
            await self._publish(
                row, Verdict(firing=False, alert_type=row.alert_type or "watch", message=f"watch {watch_id} deleted")
            )
        with self.engine.begin() as conn:
            conn.execute(db.watches.delete().where(db.watches.c.id == watch_id))

    # --- evaluation ----------------------------------------------------------------------------------------

    def _failed_runs(self, since: float) -> int:
        with self.engine.connect() as conn:
            return conn.execute(
                select(func.count()).select_from(db.runs).where(db.runs.c.status == "failed", db.runs.c.finished_at >= since)
            ).scalar_one()

    async def _target(self, name: str, targets: dict | None):
        """The version a watch judges; `targets` memoises them for one round (the defaults share champion)."""
        if targets is None:
            return await self.registry.target(name)
        if name not in targets:
            targets[name] = await self.registry.target(name)
        return targets[name]

    async def evaluate(self, spec: WatchSpec, targets: dict | None = None) -> Verdict:
        check = spec.check
        if isinstance(check, RunFailures):
            failed = await asyncio.to_thread(self._failed_runs, time.time() - check.window_hours * 3600)
            return Verdict(
                firing=failed >= check.count,
                alert_type="training_failures",
                value=failed,
                message=f"{failed} training run(s) failed in the last {check.window_hours:g} h (limit {check.count - 1})",
            )
        target = await self._target(spec.target, targets)
        if target is not None:
            label = f"{target.name} v{target.version}" + ("" if spec.target.isdigit() else f" ({spec.target})")
        if isinstance(check, Freshness):
            if target is None:
                return Verdict(
                    firing=True,
                    alert_type="model_stale",
                    message=f"no model {self.registry.model_name!r} is {spec.target} yet: nothing is served",
                )
            age_h = (time.time() - target.trained_at.timestamp()) / 3600
            return Verdict(
                firing=age_h > check.max_age_hours,
                alert_type="model_stale",
                value=round(age_h, 4),
                message=f"{label} is {age_h:.1f} h old (limit {check.max_age_hours:g} h)",
            )
        value = target.metric(check.metric) if target else None
        if value is None:
            what = f"{label} has no {check.metric}" if target else f"no version is {spec.target}"
            return Verdict(firing=False, alert_type="model_quality_low", message=f"{what}: nothing to judge")
        name = f"{label} {check.metric} {value:.3f}"
        if check.floor is not None and value < check.floor:
            return Verdict(
                firing=True, alert_type="model_quality_low", value=value, message=f"{name} is below the floor {check.floor:g}"
            )
        if check.ceiling is not None and value > check.ceiling:
            return Verdict(
                firing=True,
                alert_type="model_quality_suspicious",
                value=value,
                message=f"{name} is above {check.ceiling:g}: check for leakage or a broken validation split",
            )
        bounds = " and ".join(
            b
            for b in (
                f"at least {check.floor:g}" if check.floor is not None else "",
                f"at most {check.ceiling:g}" if check.ceiling is not None else "",
            )
            if b
        )
        return Verdict(firing=False, alert_type="model_quality_low", value=value, message=f"{name} is {bounds}")

    def _transition(self, row, firing: bool, verdict: Verdict | None, message: str, now: float) -> bool:
        """Record a change of episode if nobody else did since `row` was read; True when this call won."""
        with self.engine.begin() as conn:
            changed = conn.execute(
                update(db.watches)
                .where(
                    db.watches.c.id == row.id,
                    db.watches.c.firing == row.firing,
                    db.watches.c.since.is_(None) if row.since is None else db.watches.c.since == row.since,
                )
                .values(
                    firing=int(firing),
                    since=now,
                    message=message,
                    last_checked=now,
                    last_value=verdict.value if verdict else row.last_value,
                    alert_type=verdict.alert_type if verdict else row.alert_type,
                )
            ).rowcount
        return changed == 1

    def _checked(self, row, verdict: Verdict, now: float, interval_s: float) -> None:
        with self.engine.begin() as conn:
            values = {
                "last_checked": now,
                "last_value": verdict.value,
                "message": verdict.message,
                "next_check": now + interval_s,
            }
            if row.since is None:
                values["since"] = now
            conn.execute(update(db.watches).where(db.watches.c.id == row.id).values(**values))

    async def _publish(self, row, verdict: Verdict, severity: str = "info") -> Alert:
        alert = await self.bus.publish(
            Alert(
                type=verdict.alert_type,
                state="firing" if verdict.firing else "resolved",
                severity=severity if verdict.firing else "info",
                message=verdict.message,
                details={"watch_id": row.id, "value": verdict.value},
            )
        )
        with self.engine.begin() as conn:
            conn.execute(update(db.watches).where(db.watches.c.id == row.id).values(alert_id=alert.id))
        if verdict.firing:
            self.metrics.alerts.labels(verdict.alert_type).inc()
        return alert

    async def _check_one(self, row, now: float, targets: dict | None = None) -> list[Alert]:
        spec = WatchSpec(**row.spec)
        verdict = await self.evaluate(spec, targets)
        sent = []
        switched = row.firing and verdict.firing and row.alert_type not in (None, verdict.alert_type)
        if bool(row.firing) != verdict.firing or switched:  # e.g. a quality episode from below-floor to above-ceiling
            if not await asyncio.to_thread(self._transition, row, verdict.firing, verdict, verdict.message, now):
                return []  # another replica recorded this transition first, and publishes it
            if switched:
                sent.append(
                    await self._publish(
                        row, Verdict(firing=False, alert_type=row.alert_type, message=verdict.message, value=verdict.value)
                    )
                )
            sent.append(await self._publish(row, verdict, spec.severity))
            row = await asyncio.to_thread(self._row, row.id)
        await asyncio.to_thread(self._checked, row, verdict, now, spec.interval_s)
        return sent

    def _rows(self, due_only: bool, now: float) -> list:
        query = select(db.watches).where(db.watches.c.paused == 0).order_by(db.watches.c.id)
        if due_only:
            query = query.where(db.watches.c.next_check <= now)
        with self.engine.connect() as conn:
            return conn.execute(query).all()

    async def check(self, due_only: bool = False) -> list[Alert]:
        """Evaluate the watches (those due, or all that are not paused); returns the alerts sent."""
        async with self._lock:  # the periodic loop and a finished run may check at once
            now = time.time()
            sent, targets = [], {}  # one registry lookup per target per round, however many watches share it
            for row in await asyncio.to_thread(self._rows, due_only, now):
                try:
                    sent += await self._check_one(row, now, targets)
                except Exception:
                    log.exception("watch %s", row.id)
            if targets.get(SERVED) is not None:
                self._export_served_model(targets[SERVED])
            return sent

    def _export_served_model(self, served) -> None:
        """Prometheus gauges of the served model (the dashboards' view of what the default watches judge),
        refreshed whenever a watch of it is evaluated."""
        self.metrics.model_registered.set(served.trained_at.timestamp())
        self.metrics.model_age.set(time.time() - served.trained_at.timestamp())
        if served.dice is not None and not math.isnan(served.dice):
            self.metrics.model_dice.set(served.dice)
