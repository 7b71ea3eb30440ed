"""Importing JSON-lines logs (`logs/events.jsonl`, rotated files, `.gz` too) into the store:
streamed line by line, written in batches, duplicates (same `event.id`) ignored, bad lines
reported with their line number and skipped."""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from flowscope.logstore.rows import DocumentError, document_row
from flowscope.logstore.store import LogStore

MAX_REPORTED_BAD_LINES = 100


@dataclass(frozen=True)
class BadLine:
    path: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}"


@dataclass
class ImportReport:
    lines: int = 0  # non-blank lines read
    inserted: int = 0  # new events
    duplicates: int = 0  # events already in the store (same event.id)
    bad: int = 0  # lines skipped
    bad_lines: list[BadLine] = field(default_factory=list)  # the first MAX_REPORTED_BAD_LINES

    def skip(self, bad: BadLine) -> None:
        self.bad += 1
        if len(self.bad_lines) < MAX_REPORTED_BAD_LINES:
            self.bad_lines.append(bad)


def import_jsonl(
    store: LogStore,
    paths: Iterable[str | os.PathLike[str]],
    *,
    batch_size: int = 5_000,
    progress: Callable[[ImportReport], None] | None = None,
) -> ImportReport:
    """Import each file in turn; raises OSError for a file that cannot be opened."""
    report = ImportReport()
    rows: list[list[Any]] = []

    def write() -> None:
        inserted = store.insert_rows(rows)
        report.inserted += inserted
        report.duplicates += len(rows) - inserted
        rows.clear()
        if progress is not None:
            progress(report)

    for path in paths:
        name = str(path)
        for number, raw in _lines(Path(path)):
            if not raw.strip():
                continue
            report.lines += 1
            try:
                document = json.loads(raw)
                rows.append(document_row(document, store.context_id))
            except UnicodeDecodeError:
                report.skip(BadLine(name, number, "not UTF-8 text"))
            except json.JSONDecodeError as exc:
                report.skip(BadLine(name, number, f"not JSON ({exc.msg} at column {exc.colno})"))
            except DocumentError as exc:
                report.skip(BadLine(name, number, str(exc)))
            except RecursionError:
                report.skip(BadLine(name, number, "JSON nested too deeply"))
            if len(rows) >= batch_size:
                write()
    if rows:
        write()
    return report


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    opener: Callable[[Path], IO[bytes]] = _open_gzip if path.suffix == ".gz" else _open_plain
    with opener(path) as stream:
        yield from enumerate(stream, start=1)


def _open_gzip(path: Path) -> IO[bytes]:
    return gzip.open(path, "rb")  # type: ignore[return-value]  # GzipFile is a binary IO


def _open_plain(path: Path) -> IO[bytes]:
    return path.open("rb")
