"""Importing JSON-lines files: streamed in batches, duplicates ignored, bad lines reported
with their line numbers and skipped, rotated .gz files read too."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from logstore_samples import sample_documents

from flowscope.logstore import ImportReport, LogStore, import_jsonl


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def test_import_counts_duplicates_and_reports_bad_lines(store: LogStore, tmp_path: Path) -> None:
    documents = sample_documents()
    lines = [json.dumps(d) for d in documents]
    lines.insert(2, "{truncated")
    lines.insert(5, "")  # blank lines are not bad
    lines.insert(7, '{"message": "no timestamp"}')
    lines.append("[1, 2]")
    path = write_lines(tmp_path / "events.jsonl", lines)
    with (tmp_path / "bad-utf8.jsonl").open("wb") as stream:
        stream.write(b'{"@timestamp": "2026-11-23T09:30:00Z", "message": "\xff"}\n')

    report = import_jsonl(store, [path, tmp_path / "bad-utf8.jsonl"], batch_size=4)
    assert (report.inserted, report.duplicates, report.bad) == (len(documents), 0, 4)
    assert report.lines == len(documents) + 4
    assert [(b.path, b.line) for b in report.bad_lines] == [
        (str(path), 3),
        (str(path), 8),
        (str(path), len(lines)),
        (str(tmp_path / "bad-utf8.jsonl"), 1),
    ]
    assert "not JSON" in report.bad_lines[0].reason
    assert "missing @timestamp" in report.bad_lines[1].reason
    assert "expected a JSON object" in report.bad_lines[2].reason
    assert report.bad_lines[3].reason == "not UTF-8 text"
    assert str(report.bad_lines[0]).startswith(f"{path}:3: ")

    again = import_jsonl(store, [path])
    assert (again.inserted, again.duplicates) == (0, len(documents))
    assert store.count() == len(documents)


def test_import_reads_gzip_and_reports_progress(store: LogStore, tmp_path: Path) -> None:
    rotated = tmp_path / "events.1.jsonl.gz"
    with gzip.open(rotated, "wt", encoding="utf-8") as stream:
        for document in sample_documents():
            stream.write(json.dumps(document) + "\n")
    seen: list[int] = []

    def progress(report: ImportReport) -> None:
        seen.append(report.inserted)

    report = import_jsonl(store, [rotated], batch_size=5, progress=progress)
    assert report.inserted == len(sample_documents())
    assert seen == [5, 10, len(sample_documents())]
    assert store.count("level:error") == 2


def test_a_missing_file_raises(store: LogStore, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        import_jsonl(store, [tmp_path / "nope.jsonl"])
