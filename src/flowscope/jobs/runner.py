"""Running the store's hot statements: compiled once, executed on the driver's cursor on SQLite.

Each job costs a handful of statements (submit, claim, renew, finish). SQLAlchemy's work per
execution (~60 µs here) costs as much as SQLite's own, so on SQLite the prebuilt Core statements
are compiled once and run on the DBAPI cursor of the transaction's connection; elsewhere they go
through Core as usual. Only for statements whose values need no type conversion (text, numbers),
which holds for every column of the job store.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import sqlalchemy as sa


class Cursor(Protocol):
    """What both paths return: a DBAPI cursor or a SQLAlchemy CursorResult."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Sequence[Any] | None: ...


class Runner:
    def __init__(self, dialect: sa.Dialect) -> None:
        self.dialect = dialect
        self.direct = dialect.name == "sqlite"
        # Keyed by the statement object itself (kept alive, so never confused with another):
        # pass the module's prebuilt statements, not ones built per call.
        self._compiled: dict[tuple[Any, tuple[str, ...]], tuple[str, list[str], dict[str, Any]]]
        self._compiled = {}

    @property
    def returning(self) -> bool:
        """Whether UPDATE ... RETURNING is available."""
        return bool(self.dialect.update_returning)

    def execute(
        self, connection: sa.Connection, statement: sa.Executable, values: Mapping[str, Any]
    ) -> Cursor:
        if not self.direct:
            return connection.execute(statement, dict(values))
        sql, order, defaults = self._compile(statement, ())
        cursor = self._cursor(connection)
        cursor.execute(sql, [values[key] if key in values else defaults[key] for key in order])
        return cursor  # type: ignore[no-any-return]

    def executemany(
        self,
        connection: sa.Connection,
        statement: sa.Executable,
        rows: Sequence[Mapping[str, Any]],
    ) -> None:
        """Run `statement` once per row; an INSERT is compiled for the keys of the first row."""
        if not self.direct:
            connection.execute(statement, [dict(row) for row in rows])
            return
        sql, order, defaults = self._compile(statement, tuple(rows[0]))
        params = [[row[key] if key in row else defaults[key] for key in order] for row in rows]
        try:
            self._cursor(connection).executemany(sql, params)
        except self.dialect.loaded_dbapi.IntegrityError as exc:
            # As SQLAlchemy would raise it, so callers handle one exception type.
            raise sa.exc.IntegrityError(sql, None, exc) from exc

    def _compile(
        self, statement: sa.Executable, keys: tuple[str, ...]
    ) -> tuple[str, list[str], dict[str, Any]]:
        cache_key = (statement, keys)
        found = self._compiled.get(cache_key)
        if found is None:
            compiled = statement.compile(  # type: ignore[attr-defined]
                dialect=self.dialect, column_keys=list(keys) or None
            )
            found = (compiled.string, list(compiled.positiontup or []), dict(compiled.params))
            self._compiled[cache_key] = found
        return found

    @staticmethod
    def _cursor(connection: sa.Connection) -> Any:
        return connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
