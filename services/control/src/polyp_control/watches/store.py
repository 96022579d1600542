"""Watches in the service's database: the specs, each one's state, and the conditional writes that decide which
replica records (and so publishes) a change of episode."""

from __future__ import annotations

import builtins
import time
import uuid
from typing import Any

from sqlalchemy import Connection, Engine, func, select, update

from .. import db, outbox
from ..alerts import Alert
from ..errors import WatchNotFound
from .schemas import Verdict, Watch, WatchSpec, WatchState

Row = Any  # a row of db.watches


class WatchStore:
    def __init__(self, engine: Engine):
        self.engine = engine

    def row(self, watch_id: str) -> Row:
        with self.engine.connect() as conn:
            row = conn.execute(select(db.watches).where(db.watches.c.id == watch_id)).first()
        if row is None:
            raise WatchNotFound(f"no watch {watch_id!r}")
        return row

    @staticmethod
    def as_watch(row: Row) -> Watch:
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

    def ensure_defaults(self, defaults: dict[str, tuple[WatchSpec, str]]) -> None:
        """Create the environment's watches on first start; keep those not edited through the API equal to
        `defaults`. An episode the earlier fixed watches had open carries over."""
        now = time.time()
        with self.engine.begin() as conn:
            old_state = {row.name: row for row in conn.execute(select(db.watch_state))}
            for watch_id, (spec, alert_type) in defaults.items():
                row = conn.execute(select(db.watches).where(db.watches.c.id == watch_id)).first()
                if row is None:
                    episode = old_state.get(alert_type)
                    carried = {"firing": int(bool(episode.firing)), "since": episode.since, "alert_type": alert_type,
                               "alert_id": episode.alert_id} if episode else {}  # fmt: skip
                    _insert(conn, watch_id, spec, "settings", now, **carried)
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
            _insert(conn, watch_id, spec, "api", now)
        return self.get(watch_id)

    def list(self) -> list[Watch]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(db.watches).order_by(db.watches.c.created_at, db.watches.c.id)).all()
        return [self.as_watch(row) for row in rows]

    def get(self, watch_id: str) -> Watch:
        return self.as_watch(self.row(watch_id))

    def replace(self, watch_id: str, spec: WatchSpec) -> Watch:
        """A new spec; a default edited here stops following the settings. An open episode stays open until
        the next evaluation (due at once) says otherwise."""
        self.row(watch_id)
        with self.engine.begin() as conn:
            conn.execute(
                update(db.watches)
                .where(db.watches.c.id == watch_id)
                .values(spec=spec.model_dump(), managed_by="api", updated_at=time.time(), next_check=0)
            )
        return self.get(watch_id)

    def set_paused(self, watch_id: str, paused: bool) -> Watch:
        """A paused watch is not evaluated: an open episode stays open, silently, until it is resumed."""
        self.row(watch_id)
        with self.engine.begin() as conn:
            conn.execute(
                update(db.watches)
                .where(db.watches.c.id == watch_id)
                .values(paused=int(paused), updated_at=time.time(), next_check=0)
            )
        return self.get(watch_id)

    def delete(self, watch_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(db.watches.delete().where(db.watches.c.id == watch_id))

    def due(self, due_only: bool, now: float) -> builtins.list[Row]:
        """The watches to evaluate: those not paused (and with `due_only`, whose next check has come)."""
        query = select(db.watches).where(db.watches.c.paused == 0).order_by(db.watches.c.id)
        if due_only:
            query = query.where(db.watches.c.next_check <= now)
        with self.engine.connect() as conn:
            return list(conn.execute(query).all())

    def failed_runs(self, since: float) -> int:
        with self.engine.connect() as conn:
            return conn.execute(
                select(func.count()).select_from(db.runs).where(db.runs.c.status == "failed", db.runs.c.finished_at >= since)
            ).scalar_one()

    def transition(
        self, row: Row, firing: bool, verdict: Verdict | None, message: str, now: float, alerts: builtins.list[Alert]
    ) -> bool:
        """Record a change of episode if nobody else did since `row` was read, and stage its alerts in the same
        transaction (outbox.py); True when this call won."""
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
                    alert_id=alerts[-1].key if alerts else row.alert_id,
                )
            ).rowcount
            if changed == 1:
                for alert in alerts:
                    outbox.stage(conn, alert)
        return changed == 1

    def checked(self, row: Row, verdict: Verdict, now: float, interval_s: float) -> None:
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

    def postpone(self, watch_id: str, next_check: float) -> None:
        """A check that could not be made is tried again then, not at every tick of the loop."""
        with self.engine.begin() as conn:
            conn.execute(update(db.watches).where(db.watches.c.id == watch_id).values(next_check=next_check))


def _insert(conn: Connection, watch_id: str, spec: WatchSpec, managed_by: str, now: float, **episode: Any) -> None:
    """A new watch, due at once; `episode` carries an open one over (firing, since, alert_type, alert_id)."""
    values = {"firing": 0, **episode}
    conn.execute(
        db.watches.insert().values(
            id=watch_id, spec=spec.model_dump(), managed_by=managed_by, paused=0, created_at=now, updated_at=now,
            next_check=0, **values,
        )
    )  # fmt: skip
