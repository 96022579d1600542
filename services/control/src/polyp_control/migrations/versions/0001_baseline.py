"""Baseline: the tables as they were when migrations began.

A database an earlier version made with create_all (no alembic_version) is taken up as it is: missing
tables are created and missing columns (all nullable) added, so an upgrade keeps its runs.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Frozen here: later changes to db.py are later migrations, never edits of this one.
TABLES: dict[str, list[sa.Column | sa.UniqueConstraint]] = {
    "polyp_runs": [
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("params", sa.JSON, nullable=False),
        sa.Column("schedule_id", sa.String(64), index=True),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("submission_id", sa.String(64)),
        sa.Column("idempotency_key", sa.String(200)),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("started_at", sa.Float),
        sa.Column("finished_at", sa.Float),
        sa.Column("message", sa.Text),
        sa.Column("result", sa.JSON),
        sa.Column("retry_policy", sa.JSON),
        sa.Column("not_before", sa.Float),
        sa.Column("claimed_at", sa.Float),
        sa.Column("deadline", sa.Float),
        sa.UniqueConstraint("idempotency_key", name="uq_runs_idempotency_key"),
    ],
    "polyp_alerts": [
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("body", sa.JSON, nullable=False),
    ],
    "polyp_watches": [
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("managed_by", sa.String(16), nullable=False),
        sa.Column("paused", sa.Integer, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("next_check", sa.Float, nullable=False),
        sa.Column("firing", sa.Integer, nullable=False),
        sa.Column("since", sa.Float),
        sa.Column("last_checked", sa.Float),
        sa.Column("last_value", sa.Float),
        sa.Column("message", sa.Text),
        sa.Column("alert_type", sa.String(64)),
        sa.Column("alert_id", sa.String(64)),
    ],
    "polyp_watch_state": [
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("firing", sa.Integer, nullable=False),
        sa.Column("since", sa.Float, nullable=False),
        sa.Column("alert_id", sa.String(64)),
    ],
    "polyp_leases": [
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("holder", sa.String(200), nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
    ],
}


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    for name, items in TABLES.items():
        if not inspector.has_table(name):
            op.create_table(name, *items)
            continue
        present = {column["name"] for column in inspector.get_columns(name)}
        for column in items:
            if isinstance(column, sa.Column) and column.name not in present:
                op.add_column(name, column.copy())


def downgrade() -> None:
    for name in reversed(TABLES):
        op.drop_table(name)
