"""Alembic's environment: the migrations run on the connection `db.migrate` hands over, under its lock.

New migration: `alembic -c services/control/alembic.ini revision -m "what changes"` writes one under versions/."""

from alembic import context

from polyp_control.db import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise SystemExit("run the migrations through polyp_control.db.migrate (the service does at start): it holds the lock")
# SQLite alters a table by copying it (batch mode); PostgreSQL alters in place.
context.configure(connection=connection, target_metadata=metadata, render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
