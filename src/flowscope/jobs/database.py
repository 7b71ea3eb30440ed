"""Opening the job store's database: the engine, SQLite's settings and write transactions.

SQLite runs in WAL mode, so readers never block the writer. Write transactions start with
`BEGIN IMMEDIATE`: they take the write lock up front, so two processes (a server and a
`flowscope worker`) queue on `busy_timeout` instead of failing when a read turns into a write.
Before that, this project's writers take an advisory file lock next to the database (`WriterLock`):
SQLite's busy handler sleeps 1, 2, 5, 10... ms between tries, which would add those sleeps to
the latency of a submit whenever a worker process is claiming or finishing a job; a process
waiting on the file lock is woken by the kernel as soon as it is free.
Checkpoints (the only fsyncs with synchronous=NORMAL) run in a background `Checkpointer`
thread instead of inside whichever commit crosses SQLite's threshold, which would stall that
commit (a submit) for tens of milliseconds.
Other databases (PostgreSQL later) get a plain engine; the store's SQL is portable Core.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: SQLite's busy handler alone
    fcntl = None  # type: ignore[assignment]

import sqlalchemy as sa

SQLiteSynchronous = Literal["OFF", "NORMAL", "FULL", "EXTRA"]
_WRITE = "flowscope_write"  # execution option: this connection's transaction will write
# Connections are cheap in SQLite; request threads read concurrently under WAL.
_POOL_SIZE = 8
_POOL_OVERFLOW = 56
_WAL_SIZE_LIMIT = 64 * 1024 * 1024  # bytes the WAL file keeps after a checkpoint resets it


def is_sqlite(engine: sa.Engine) -> bool:
    return engine.dialect.name == "sqlite"


def create_store_engine(
    url: str | sa.URL,
    *,
    synchronous: SQLiteSynchronous = "NORMAL",
    busy_timeout_s: float = 30.0,
) -> sa.Engine:
    """An engine for `url`; for SQLite, the file's folder is created and the pragmas set.

    `synchronous`: NORMAL (the default) makes a commit durable across a crash or kill of the
    process, which is what restart-safety needs: in WAL mode the commit is in the OS's page
    cache when `submit` returns, and the WAL is fsynced at checkpoints. A power loss or kernel
    crash may lose the last commits; FULL fsyncs every commit (group commit keeps it affordable)
    for machines where that matters.
    """
    parsed = sa.make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return sa.create_engine(parsed, pool_pre_ping=True)
    database = parsed.database
    if not database or database == ":memory:" or database.startswith("file::memory:"):
        raise ValueError(
            f"the job store needs a database file, not an in-memory database ({url!s}); "
            "use sqlite:///PATH"
        )
    Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(
        parsed,
        connect_args={"check_same_thread": False, "timeout": busy_timeout_s},
        pool_size=_POOL_SIZE,
        max_overflow=_POOL_OVERFLOW,
    )
    _configure_sqlite(engine, synchronous)
    return engine


def _configure_sqlite(engine: sa.Engine, synchronous: SQLiteSynchronous) -> None:
    @sa.event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # The driver's own transaction handling would BEGIN (deferred) behind our back; we emit
        # BEGIN ourselves in on_begin (SQLAlchemy's documented recipe for pysqlite).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            _enter_wal(cursor)
            cursor.execute(f"PRAGMA synchronous={synchronous}")
            cursor.execute("PRAGMA foreign_keys=ON")
            # Checkpoints fsync; a Checkpointer thread runs them so that no commit waits.
            cursor.execute("PRAGMA wal_autocheckpoint=0")
            cursor.execute(f"PRAGMA journal_size_limit={_WAL_SIZE_LIMIT}")
        finally:
            cursor.close()

    @sa.event.listens_for(engine, "begin")
    def on_begin(connection: sa.Connection) -> None:
        writes = connection.get_execution_options().get(_WRITE, False)
        # On the driver directly: through SQLAlchemy, BEGIN would cost as much as the write.
        driver = connection.connection.driver_connection
        driver.execute("BEGIN IMMEDIATE" if writes else "BEGIN")  # type: ignore[union-attr]


def _enter_wal(cursor: Any, attempts: int = 50) -> None:
    """Switch a new file to WAL. The switch needs the file to itself and ignores busy_timeout,
    so two processes opening an empty store at once can see "database is locked": retry."""
    for attempt in range(attempts):
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(0.01 * (attempt + 1))


@contextmanager
def write_transaction(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A transaction that will write: committed on success, rolled back on an exception."""
    with engine.connect() as connection:
        connection.execution_options(**{_WRITE: True})
        with connection.begin():
            yield connection


class WriterLock:
    """An exclusive advisory lock (flock) on `<database>-writer.lock`, held around each write
    transaction by every process of this project that writes the file. One holder per process
    at a time: `Writer.lock` serialises the threads."""

    def __init__(self, database: Path) -> None:
        self.path = database.with_name(database.name + "-writer.lock")
        self._fd: int | None = None
        if fcntl is not None:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)

    @contextmanager
    def held(self) -> Iterator[None]:
        fd = self._fd
        if fd is None:
            yield
            return
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class Writer:
    """This process's one writing connection, used under `lock`: in-process writers queue on
    the lock instead of on SQLite's busy handler, and no transaction pays for a pool checkout.
    For SQLite, each transaction also holds the `WriterLock` shared with other processes."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.lock = threading.Lock()
        self._connection: sa.Connection | None = None
        self._file_lock: WriterLock | None = None
        database = engine.url.database if is_sqlite(engine) else None
        if database:
            self._file_lock = WriterLock(Path(database))

    @contextmanager
    def transaction(self) -> Iterator[sa.Connection]:
        """A write transaction on the shared connection; hold `lock` around it."""
        connection = self._connection
        if connection is None:
            connection = self.engine.connect()
            connection.execution_options(**{_WRITE: True})
            self._connection = connection
        file_lock = self._file_lock.held() if self._file_lock else contextlib.nullcontext()
        try:
            with file_lock, connection.begin():
                yield connection
        except BaseException:
            if connection.invalidated:  # the database connection broke: start afresh next time
                self._connection = None
                connection.close()
            raise

    def close(self) -> None:
        with self.lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None
            if self._file_lock is not None:
                self._file_lock.close()
                self._file_lock = None


class Checkpointer:
    """Copies SQLite's WAL into the database file every `interval_s`, off the commit path.

    PASSIVE checkpoints never block writers or readers. Several processes may run one each:
    SQLite lets one checkpoint at a time, and a busy checkpoint just waits for the next turn.
    """

    def __init__(self, engine: sa.Engine, interval_s: float = 1.0) -> None:
        self.engine = engine
        self.interval_s = interval_s
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="flowscope-jobs-checkpoint", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def checkpoint(self) -> None:
        try:
            with self.engine.connect() as connection:
                connection.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
        except sa.exc.DBAPIError:  # busy or closing: the next turn will do it
            self.errors += 1

    def close(self) -> None:
        """Stop the thread after one last checkpoint."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.checkpoint()
        self.checkpoint()
