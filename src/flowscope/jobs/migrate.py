"""Bringing a job store's schema up to date with Alembic, configured in code (the scripts ship
inside the package, so no alembic.ini is needed)."""

from __future__ import annotations

import sqlalchemy as sa

from flowscope.jobs.database import write_transaction
from flowscope.jobs.schema import HEAD_REVISION, VERSION_TABLE

SCRIPT_LOCATION = "flowscope.jobs:migrations"


class SchemaVersionError(RuntimeError):
    """The database's schema cannot be brought to this version of flowscope."""


def current_revision(engine: sa.Engine) -> str | None:
    """The schema revision stored in the database, or None for an empty database."""
    with engine.connect() as connection:
        try:
            value = connection.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}"))
            return value.scalar()
        except sa.exc.DBAPIError:
            return None


def upgrade_schema(engine: sa.Engine) -> None:
    """Create or migrate the tables; a no-op costing one query when the schema is current."""
    if current_revision(engine) == HEAD_REVISION:
        return
    # Imported here: Alembic costs ~0.3 s to import and is needed only when the schema changes.
    from alembic import command
    from alembic.config import Config
    from alembic.util import CommandError

    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    config.set_main_option("path_separator", "os")
    try:
        with write_transaction(engine) as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    except CommandError as exc:
        raise SchemaVersionError(
            f"cannot migrate the job store at {engine.url!r} to revision {HEAD_REVISION}: {exc}. "
            "Was it written by a newer flowscope?"
        ) from exc
