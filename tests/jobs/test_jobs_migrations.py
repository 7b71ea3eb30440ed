"""Migrations: an empty file gets the schema, reopening is a no-op, and the migrations create
exactly the tables that schema.py describes."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from jobs_support import new_job

from flowscope.jobs import JobStore, SchemaVersionError
from flowscope.jobs.database import create_store_engine
from flowscope.jobs.migrate import SCRIPT_LOCATION, current_revision
from flowscope.jobs.schema import HEAD_REVISION, VERSION_TABLE, metadata


def test_empty_file_gets_the_schema_and_reopening_keeps_the_data(db_url: str) -> None:
    with JobStore(db_url) as store:
        store.submit(new_job("kept"))
    engine = create_store_engine(db_url)
    try:
        assert current_revision(engine) == HEAD_REVISION
        tables = set(sa.inspect(engine).get_table_names())
        assert {"jobs", "job_counters", VERSION_TABLE} <= tables
        with engine.connect() as connection:
            journal = connection.exec_driver_sql("PRAGMA journal_mode").scalar()
        assert journal == "wal"
    finally:
        engine.dispose()
    with JobStore(db_url) as store:
        assert [job.job_id for job in store.queue()[1]] == ["kept"]


def test_head_revision_constant_matches_the_migration_scripts() -> None:
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    config.set_main_option("path_separator", "os")
    assert ScriptDirectory.from_config(config).get_current_head() == HEAD_REVISION


def test_migrations_create_what_schema_py_describes(db_url: str) -> None:
    JobStore(db_url).close()
    engine = create_store_engine(db_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"version_table": VERSION_TABLE, "compare_type": True}
            )
            assert compare_metadata(context, metadata) == []
    finally:
        engine.dispose()


def test_two_stores_opening_an_empty_file_at_once(db_url: str) -> None:
    errors: list[BaseException] = []
    stores: list[JobStore] = []

    def open_() -> None:
        try:
            stores.append(JobStore(db_url))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for store in stores:
        store.close()
    assert errors == []
    assert len(stores) == 2


def test_a_database_from_a_newer_flowscope_is_refused_clearly(db_url: str) -> None:
    JobStore(db_url).close()
    engine = create_store_engine(db_url)
    with engine.begin() as connection:
        connection.execute(sa.text(f"UPDATE {VERSION_TABLE} SET version_num = 'future'"))
    engine.dispose()
    with pytest.raises(SchemaVersionError, match="newer flowscope"):
        JobStore(db_url)


def test_the_folder_of_the_database_is_created(tmp_path: Path) -> None:
    with JobStore(f"sqlite:///{tmp_path / 'new' / 'deeper' / 'flowscope.db'}") as store:
        assert store.queue_remaining() == 0
    assert (tmp_path / "new" / "deeper" / "flowscope.db").exists()
