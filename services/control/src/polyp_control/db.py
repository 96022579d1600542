"""The service's own tables (runs, local alert history, watch episodes, leader lease) on SQLAlchemy.

SQLite under `make up`, the platform's PostgreSQL in a cluster; APScheduler keeps its job store
(`apscheduler_jobs`) in the same database.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import JSON, Column, Float, Integer, MetaData, String, Table, Text, UniqueConstraint, create_engine, event
from sqlalchemy import inspect as inspect_db
from sqlalchemy import text as sql
from sqlalchemy.engine import Engine

metadata = MetaData()

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

alerts = Table(  # history of the in-process bus; with Redis the capped stream keeps it
    "polyp_alerts",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("body", JSON, nullable=False),
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


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _wal(connection, _):  # readers do not block the writer; two local instances can share the file
            connection.execute("PRAGMA journal_mode=WAL")
    else:
        engine = create_engine(url, pool_pre_ping=True)
    metadata.create_all(engine)
    _add_new_columns(engine)
    return engine


def _add_new_columns(engine: Engine) -> None:
    """create_all makes missing tables, not missing columns: a database an earlier version created gets the
    columns added since (all nullable) here, so an upgrade keeps its runs."""
    inspector = inspect_db(engine)
    for table in metadata.sorted_tables:
        if not inspector.has_table(table.name):
            continue
        present = {column["name"] for column in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name not in present:
                with engine.begin() as conn:
                    conn.execute(sql(f"ALTER TABLE {table.name} ADD COLUMN {column.name} {column.type.compile(engine.dialect)}"))
