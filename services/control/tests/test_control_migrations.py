"""The schema is made by versioned Alembic migrations: they give exactly the tables the code uses, on SQLite (make up)
and PostgreSQL (a cluster), and an upgrade repairs what an older version let through."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, insert, select, text, update
from sqlalchemy.exc import IntegrityError

from polyp_control import db


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path) -> str:
    return request.getfixturevalue("postgres_url") if request.param == "postgresql" else f"sqlite:///{tmp_path / 'c.db'}"


def run_row(run_id: str, status: str, schedule_id: str | None = "nightly", created_at: float = 1.0) -> dict:
    return {"id": run_id, "status": status, "params": {}, "schedule_id": schedule_id, "attempt": 1, "created_at": created_at}


def test_the_migrations_make_the_schema_the_code_describes(database_url):
    engine = db.make_engine(database_url)
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"include_name": lambda name, kind, _: kind != "table" or name.startswith("polyp_")}
        )
        differences = compare_metadata(context, db.metadata)
        version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    engine.dispose()
    assert differences == [] and version == "0003"


def test_the_database_admits_one_active_run_per_schedule(database_url):
    """Active runs of other schedules, finished runs, and a failed run closed with its queued retry all fit."""
    engine = db.make_engine(database_url)
    with engine.begin() as conn:
        conn.execute(insert(db.runs), [run_row("a", "running"), run_row("b", "failed"), run_row("c", "pending", "weekly")])
        conn.execute(insert(db.runs), [run_row("d", "succeeded"), run_row("e", "running", None), run_row("f", "queued", None)])
    for status in db.ACTIVE:
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(insert(db.runs).values(run_row(f"second-{status}", status)))
    with engine.begin() as conn:  # as RunService._close does: the failed attempt and its retry in one transaction
        conn.execute(update(db.runs).where(db.runs.c.id == "a").values(status="failed"))
        conn.execute(insert(db.runs).values(run_row("a-retry", "queued")))
    with engine.connect() as conn:
        active = conn.execute(select(db.runs.c.id).where(db.runs.c.status.in_(db.ACTIVE)).order_by(db.runs.c.id)).scalars().all()
    engine.dispose()
    assert active == ["a-retry", "c", "e", "f"]


def test_an_upgrade_keeps_the_oldest_of_duplicate_active_runs(database_url):
    """A database from before the index may hold several active runs of one schedule (the race it closes): the
    oldest stays, the later ones are cancelled, saying why, so that the index can be made."""
    old = create_engine(database_url)
    with old.begin() as conn:  # the schema at migration 0001, with the duplicates the race made
        conn.execute(text(OLDER_SCHEMA))
        conn.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)"))
        conn.execute(text("INSERT INTO alembic_version VALUES ('0001')"))
        for run_id, created_at in (("second", 2.0), ("first", 1.0), ("third", 3.0)):
            conn.execute(text(INSERT_PENDING), {"id": run_id, "at": created_at})
    old.dispose()
    engine = db.make_engine(database_url)
    with engine.connect() as conn:
        rows = conn.execute(select(db.runs.c.id, db.runs.c.status, db.runs.c.message).order_by(db.runs.c.id)).all()
    engine.dispose()
    assert [(r.id, r.status) for r in rows] == [("first", "pending"), ("second", "cancelled"), ("third", "cancelled")]
    assert "second active run of its schedule" in rows[1].message


OLDER_SCHEMA = (
    "CREATE TABLE polyp_runs (id VARCHAR(32) PRIMARY KEY, status VARCHAR(16) NOT NULL, params JSON NOT NULL,"
    " schedule_id VARCHAR(64), attempt INTEGER NOT NULL, submission_id VARCHAR(64), idempotency_key VARCHAR(200),"
    " created_at FLOAT NOT NULL, started_at FLOAT, finished_at FLOAT, message TEXT, result JSON, retry_policy JSON,"
    " not_before FLOAT, claimed_at FLOAT, deadline FLOAT)"
)
INSERT_PENDING = (
    "INSERT INTO polyp_runs (id, status, params, schedule_id, attempt, created_at)"
    " VALUES (:id, 'pending', '{}', 'nightly', 1, :at)"
)
