"""A lease in the service's database: of several replicas, only the holder fires schedules.

The lease is a row updated atomically (PostgreSQL in a cluster, SQLite locally): take it when it
is free or expired, renew it while holding it. A replica that dies loses it after `ttl_s`.
A replica that believes it leads may be wrong (paused past its lease, cut off while renewing): what it
does as leader is fenced by `held()`, a condition checked in the same statement that acts.
"""

from __future__ import annotations

import time

from sqlalchemy import ColumnElement, Engine, exists, insert, update
from sqlalchemy.exc import IntegrityError

from . import db


class Lease:
    def __init__(self, engine: Engine, name: str, holder: str, ttl_s: float = 15.0):
        self.engine, self.name, self.holder, self.ttl_s = engine, name, holder, ttl_s

    def acquire(self) -> bool:
        """Take or renew the lease; True while this replica holds it."""
        now = time.time()
        with self.engine.begin() as conn:
            taken = conn.execute(
                update(db.leases)
                .where(db.leases.c.name == self.name, (db.leases.c.holder == self.holder) | (db.leases.c.expires_at < now))
                .values(holder=self.holder, expires_at=now + self.ttl_s)
            ).rowcount
        if taken:
            return True
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(db.leases).values(name=self.name, holder=self.holder, expires_at=now + self.ttl_s))
            return True
        except IntegrityError:
            return False

    def held(self) -> ColumnElement[bool]:
        """True, inside a statement, only while this replica holds the lease unexpired at that moment."""
        return exists().where(
            db.leases.c.name == self.name, db.leases.c.holder == self.holder, db.leases.c.expires_at > time.time()
        )

    def release(self) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(db.leases).where(db.leases.c.name == self.name, db.leases.c.holder == self.holder).values(expires_at=0)
            )
