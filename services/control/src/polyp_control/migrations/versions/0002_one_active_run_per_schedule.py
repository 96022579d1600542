"""One active run per schedule, kept by the database (a partial unique index).

Concurrent "run now" calls on several replicas once each checked, then inserted, and could start a schedule
two or three times. A database that already holds such duplicates keeps each schedule's oldest active run;
the later ones are cancelled, saying why (their Ray jobs, if any, are stopped by nobody: see the message).

Revision ID: 0002
Revises: 0001
"""

import time

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

ACTIVE = ("queued", "submitting", "pending", "running")  # frozen: the states before a run's end
INDEX = "uq_runs_one_active_run_per_schedule"


def upgrade() -> None:
    runs = sa.table("polyp_runs", sa.column("id"), sa.column("schedule_id"), sa.column("status"), sa.column("created_at"),
                    sa.column("finished_at"), sa.column("message"))  # fmt: skip
    bind = op.get_bind()
    active = bind.execute(
        sa.select(runs.c.id, runs.c.schedule_id)
        .where(runs.c.schedule_id.is_not(None), runs.c.status.in_(ACTIVE))
        .order_by(runs.c.schedule_id, runs.c.created_at)
    ).all()
    kept: set[str] = set()
    for run_id, schedule_id in active:
        if schedule_id in kept:
            bind.execute(
                sa.update(runs)
                .where(runs.c.id == run_id)
                .values(
                    status="cancelled",
                    finished_at=time.time(),
                    message="cancelled on upgrade: a second active run of its schedule",
                )
            )
        kept.add(schedule_id)
    where = sa.text(f"schedule_id IS NOT NULL AND status IN {ACTIVE!r}")
    op.create_index(INDEX, "polyp_runs", ["schedule_id"], unique=True, postgresql_where=where, sqlite_where=where)


def downgrade() -> None:
    op.drop_index(INDEX, table_name="polyp_runs")
