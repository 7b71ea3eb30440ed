"""Alembic's environment: migrates the connection that `flowscope.jobs.migrate` hands over.

Runs inside the caller's transaction (a write transaction on SQLite), so two processes opening
an empty database at once migrate it once.
"""

from __future__ import annotations

from alembic import context

from flowscope.jobs.schema import VERSION_TABLE

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=None,
    version_table=VERSION_TABLE,
    render_as_batch=True,  # SQLite alters tables by copying them
)
with context.begin_transaction():
    context.run_migrations()
