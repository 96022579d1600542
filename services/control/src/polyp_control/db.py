"""The service's own tables (runs, local alert history, watch episodes, leader lease) on SQLAlchemy.

SQLite under `make up`, the platform's PostgreSQL in a cluster; APScheduler keeps its job store
(`apscheduler_jobs`) in the same database. The tables here are what the code reads and writes; the
schema itself is made by the Alembic migrations in `migrations/`, run once per upgrade (see migrate).
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import (
    JSON,
    Column,
    Connection,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
)
from sqlalchemy import text as sql
from sqlalchemy.engine import Engine

metadata = MetaData()
ACTIVE = ("queued", "submitting", "pending", "running")  # a run's states before its end; queued: a retry waiting for its time
STARTUP_LOCK_KEY = 7_203_117_001  # the PostgreSQL advisory lock replicas take at start (startup_lock): any constant of ours

runs = Table(
    "polyp_runs",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("params", JSON, nullable=False),
    Column("schedule_id", String(64), index=True),
    Column("attempt", Integer, nullable=False, default=1),
    Column("submission_id", String(64)),
    Column("idempotency_key", String(200)),
    Column("created_at", Float, nullable=False),
    Column("started_at", Float),
    Column("finished_at", Float),
    Column("message", Text),
    Column("result", JSON),
    # Durable lifecycle: what a restart must not lose (columns added later are nullable; see _add_new_columns).
    Column("retry_policy", JSON),  # max attempts, backoff, SLA: the schedule's, as it was when it fired
    Column("not_before", Float),  # a queued retry is submitted from this time on
    Column("claimed_at", Float),  # when submitting began: a run left in `submitting` past a timeout is recovered
    Column("deadline", Float),  # SLA: cancelled and alerted if still active then
    UniqueConstraint("idempotency_key", name="uq_runs_idempotency_key"),
)
# A schedule has at most one active run (its queued retry included): the database refuses a second, so concurrent
# "run now" calls on several replicas start one run. Migration 0002 makes it.
ONE_ACTIVE_RUN = "uq_runs_one_active_run_per_schedule"
_active_of_a_schedule = runs.c.schedule_id.is_not(None) & runs.c.status.in_(ACTIVE)
Index(ONE_ACTIVE_RUN, runs.c.schedule_id, unique=True, postgresql_where=_active_of_a_schedule, sqlite_where=_active_of_a_schedule)

alerts = Table(  # history of the in-process bus; with Redis the capped stream keeps it
    "polyp_alerts",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("body", JSON, nullable=False),
)

alert_outbox = Table(  # alerts staged with their state change, until the bus has them (outbox.py)
    "polyp_alert_outbox",
    metadata,
    Column("key", String(32), primary_key=True),
    Column("body", JSON, nullable=False),
    Column("created_at", Float, nullable=False),
)

watches = Table(  # /v1/watches: the spec, and the episode state a restart must not lose
    "polyp_watches",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("spec", JSON, nullable=False),
    Column("managed_by", String(16), nullable=False),  # settings (a default) or api
    Column("paused", Integer, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("next_check", Float, nullable=False),
    Column("firing", Integer, nullable=False),
    Column("since", Float),
    Column("last_checked", Float),
    Column("last_value", Float),
    Column("message", Text),
    Column("alert_type", String(64)),  # of the open episode: its resolution carries the same type
    Column("alert_id", String(64)),
)

watch_state = Table(  # the earlier fixed watches' episodes: read once, when the defaults are created
    "polyp_watch_state",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("firing", Integer, nullable=False),
    Column("since", Float, nullable=False),
    Column("alert_id", String(64)),
)

leases = Table(
    "polyp_leases",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("holder", String(200), nullable=False),
    Column("expires_at", Float, nullable=False),
)


def make_engine(url: str, timeout_s: float = 5.0) -> Engine:
    """An engine whose every call ends within about timeout_s (connect, wait for a pooled connection, statement), on
    a database migrated to the current schema."""
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": max(timeout_s, 30)})

        @event.listens_for(engine, "connect")
        def _wal(connection, _):  # readers do not block the writer; two local instances can share the file
            connection.execute("PRAGMA journal_mode=WAL")
    else:
        engine = create_engine(url, pool_pre_ping=True, pool_timeout=timeout_s, connect_args=postgres_timeouts(timeout_s))
    migrate(engine)
    return engine


def postgres_timeouts(timeout_s: float) -> dict:
    """libpq's settings: connect within timeout_s, cancel a statement running longer, and notice a dead peer by TCP
    keepalives (a half-open connection after a failover) instead of waiting on it for ever."""
    return {
        "connect_timeout": max(1, round(timeout_s)),
        "options": f"-c statement_timeout={round(timeout_s * 1000)} -c idle_in_transaction_session_timeout=60000",
        "keepalives": 1,
        "keepalives_idle": 10,
        "keepalives_interval": 5,
        "keepalives_count": 3,
    }


def reachable(engine: Engine) -> bool:
    """The database answers a trivial query (within the engine's timeouts)."""
    try:
        with engine.connect() as conn:
            conn.execute(sql("SELECT 1"))
        return True
    except Exception:  # noqa: BLE001 - any failure means not reachable
        return False


def migrate(engine: Engine) -> None:
    """Bring the database to the newest schema with Alembic, once: every replica runs this at start, and the lock
    makes the others wait until the first is done, then find nothing to do. An older database (made before the
    migrations existed) is taken up by the baseline, keeping its rows."""
    config = Config()
    config.set_main_option("script_location", "polyp_control:migrations")
    with startup_lock(engine) as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "head")


@contextlib.contextmanager
def startup_lock(engine: Engine) -> Iterator[Connection]:
    """What replicas starting at once must do one at a time (migrate, create the default rows).
    PostgreSQL: a session advisory lock, held across the transactions made meanwhile (released if the process dies,
    with its session). SQLite: an exclusive lock on a file beside the database (local processes share that file)."""
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(sql("SET statement_timeout = 0"))  # a migration, or the wait for another's, may take longer
            conn.execute(sql("SELECT pg_advisory_lock(:key)"), {"key": STARTUP_LOCK_KEY})
            conn.commit()
            try:
                yield conn
            finally:
                conn.execute(sql("SELECT pg_advisory_unlock(:key)"), {"key": STARTUP_LOCK_KEY})
                conn.execute(sql("RESET statement_timeout"))
                conn.commit()
        elif engine.url.database and engine.url.database != ":memory:":
            with open(f"{engine.url.database}.migrate-lock", "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                yield conn
        else:
            yield conn
