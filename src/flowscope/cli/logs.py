"""`flowscope logs`, `logs import`, `stats nodes` and `trace`: the local log store from the
terminal (search with KQL, import JSON lines, per-node-type statistics, a job's waterfall)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from flowscope.cli.display import make_console
from flowscope.logstore import (
    AmbiguousJobError,
    DateError,
    ImportReport,
    JobTimeline,
    KQLError,
    LogStore,
    NodeSpan,
    NodeTypeStats,
    SchemaError,
    StoreMissingError,
    import_jsonl,
    job_timeline,
    node_stats,
    parse_since,
    resolve_job_id,
    store_path,
)
from flowscope.telemetry.events import format_timestamp

EXIT_NOT_FOUND = 1
EXIT_INVALID = 2

LEVEL_STYLES = {"error": "bold red", "warn": "yellow", "debug": "dim"}
STATUS_STYLES = {
    "succeeded": "green",
    "cached": "cyan",
    "failed": "bold red",
    "blocked": "magenta",
    "unfinished": "yellow",
    "interrupted": "yellow",
    "running": "yellow",
}


def _open_store(args: argparse.Namespace, err: Console) -> LogStore | None:
    try:
        return LogStore(store_path(args.base_directory), create=False)
    except (StoreMissingError, SchemaError) as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}")
        return None


def _window(args: argparse.Namespace, err: Console) -> tuple[int | None, int | None] | None:
    now = time.time_ns()
    try:
        since = parse_since(args.since, now) if args.since else None
        until = parse_since(args.until, now) if args.until else None
    except DateError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}")
        return None
    return since, until


# -- logs ---------------------------------------------------------------------------------
def logs_command(args: argparse.Namespace) -> int:
    err = make_console(stderr=True)
    if args.query == "import":
        return _import(args, err)
    if args.files:
        err.print(
            f"[bold red]error:[/] unexpected arguments {escape(' '.join(args.files))}: quote the "
            "whole query, e.g. flowscope logs 'level:error and node:KSampler'"
        )
        return EXIT_INVALID
    window = _window(args, err)
    if window is None:
        return EXIT_INVALID
    store = _open_store(args, err)
    if store is None:
        return EXIT_NOT_FOUND
    with store:
        try:
            documents = store.search(
                args.query or "",
                since=window[0],
                until=window[1],
                limit=args.limit,
                oldest_first=args.oldest_first,
            )
        except KQLError as exc:
            err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
            return EXIT_INVALID
    out = make_console()
    if args.json:
        for document in documents:
            out.out(json.dumps(document, ensure_ascii=False), highlight=False)
        return 0
    out.print(_events_table(documents, args))
    return 0


def _events_table(documents: list[dict[str, Any]], args: argparse.Namespace) -> Table:
    order = "oldest first" if args.oldest_first else "newest first"
    title = f"{len(documents)} event{'' if len(documents) == 1 else 's'}, {order}"
    if args.query:
        title += f" — {args.query}"
    table = Table(title=escape(title), title_justify="left")
    for column in ("time (UTC)", "level", "action", "job", "node", "ms", "message"):
        table.add_column(column, justify="right" if column == "ms" else "left")
    for doc in documents:
        level = str(doc.get("log.level", ""))
        node = f"#{doc['node.id']} " if "node.id" in doc else ""
        node += str(doc.get("node.type", ""))
        duration = doc.get("event.duration")
        message = str(doc.get("message", ""))
        if "error.message" in doc or "error.type" in doc:
            message += f" — {doc.get('error.type', '')}: {doc.get('error.message', '')}"
        table.add_row(
            str(doc["@timestamp"]).replace("T", " ")[:23],
            Text(level, style=LEVEL_STYLES.get(level, "")),
            str(doc.get("event.action", "")),
            str(doc.get("job.id", ""))[:8],  # enough for `flowscope trace`, which takes a prefix
            node.strip(),
            f"{duration / 1e6:.1f}" if isinstance(duration, int) else "",
            Text(message),
        )
    if len(documents) == args.limit:
        table.caption = f"the first {args.limit} matches; --limit N shows more"
    return table


def _import(args: argparse.Namespace, err: Console) -> int:
    if not args.files:
        err.print("[bold red]error:[/] flowscope logs import FILE...: name the JSON-lines files")
        return EXIT_INVALID
    missing = [name for name in args.files if not Path(name).is_file()]
    if missing:
        err.print(f"[bold red]error:[/] no such file: {escape(', '.join(missing))}")
        return EXIT_NOT_FOUND
    path = store_path(args.base_directory)
    try:
        store = LogStore(path)
    except SchemaError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}")
        return EXIT_INVALID
    with store:
        try:
            report = import_jsonl(store, args.files)
        except OSError as exc:
            err.print(f"[bold red]error:[/] {escape(str(exc))}")
            return EXIT_NOT_FOUND
    out = make_console()
    if args.json:
        out.print_json(data=_report_json(report))
    else:
        out.print(
            f"{report.inserted} events imported into {path}, {report.duplicates} already there, "
            f"{report.bad} bad lines skipped",
            highlight=False,
        )
    for bad in report.bad_lines:
        err.print(f"[yellow]skipped[/] {escape(str(bad))}", highlight=False)
    if report.bad > len(report.bad_lines):
        err.print(f"[yellow]... and {report.bad - len(report.bad_lines)} more bad lines[/]")
    return 0


def _report_json(report: ImportReport) -> dict[str, Any]:
    return {
        "lines": report.lines,
        "inserted": report.inserted,
        "duplicates": report.duplicates,
        "bad": report.bad,
        "bad_lines": [
            {"path": b.path, "line": b.line, "reason": b.reason} for b in report.bad_lines
        ],
    }


# -- stats nodes --------------------------------------------------------------------------
def stats_command(args: argparse.Namespace) -> int:
    err = make_console(stderr=True)
    window = _window(args, err)
    if window is None:
        return EXIT_INVALID
    store = _open_store(args, err)
    if store is None:
        return EXIT_NOT_FOUND
    with store:
        stats = node_stats(store, since=window[0], until=window[1])
    out = make_console()
    if args.json:
        out.print_json(data=[entry.to_dict() for entry in stats])
        return 0
    out.print(_stats_table(stats, args.since))
    return 0


def _stats_table(stats: list[NodeTypeStats], since: str | None) -> Table:
    title = f"node types{f' over the last {since}' if since else ''}, by total run time"
    table = Table(title=escape(title), title_justify="left")
    for column in (
        "node type",
        "count",
        "errors",
        "cached",
        "mean ms",
        "p50 ms",
        "p95 ms",
        "max ms",
        "total s",
    ):
        table.add_column(column, justify="left" if column == "node type" else "right")
    for entry in stats:
        table.add_row(
            entry.node_type,
            str(entry.count),
            Text(f"{entry.error_rate:.1%}", style="red" if entry.failed else ""),
            f"{entry.cache_hit_rate:.1%}",
            _ms(entry.mean_ms),
            _ms(entry.p50_ms),
            _ms(entry.p95_ms),
            _ms(entry.max_ms),
            f"{entry.total_ms / 1000:.2f}",
        )
    if not stats:
        table.caption = "no node results in this window"
    return table


def _ms(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}"


# -- trace --------------------------------------------------------------------------------
def trace_command(args: argparse.Namespace) -> int:
    err = make_console(stderr=True)
    store = _open_store(args, err)
    if store is None:
        return EXIT_NOT_FOUND
    with store:
        try:
            job_id = resolve_job_id(store, args.job_id)
        except AmbiguousJobError as exc:
            err.print(f"[bold red]error:[/] {escape(str(exc))}")
            return EXIT_INVALID
        timeline = job_timeline(store, job_id) if job_id is not None else None
    if timeline is None:
        err.print(
            f"[bold red]error:[/] no events of job {escape(args.job_id)!r} in "
            f"{store.path}; `flowscope logs` lists recent jobs"
        )
        return EXIT_NOT_FOUND
    out = make_console()
    if args.json:
        out.print_json(data=timeline.to_dict())
        return 0
    _print_waterfall(out, timeline)
    return 0


def _print_waterfall(out: Console, timeline: JobTimeline) -> None:
    header = Text()
    header.append(f"job {timeline.job_id}  ", style="bold")
    header.append(timeline.status, style=STATUS_STYLES.get(timeline.status, ""))
    header.append(
        f"  {timeline.duration_ns / 1e6:.1f} ms  started {format_timestamp(timeline.start_ns)}"
    )
    out.print(header)
    details = [
        f"{label} {value}"
        for label, value in (
            ("workflow", timeline.workflow_id),
            ("user", timeline.user_id),
            ("trace", timeline.trace_id),
        )
        if value
    ]
    if details:
        out.print("  ".join(details), style="dim", highlight=False)
    width = max(20, min(80, (out.width or 120) - 70))
    total = max(
        timeline.duration_ns,
        max((s.offset_ns + s.duration_ns for s in timeline.spans), default=0),
        1,
    )
    table = Table(show_edge=False, pad_edge=False)
    for column in ("node", "status", "start ms", "ms", "timeline"):
        table.add_column(column, justify="right" if column.endswith("ms") else "left", no_wrap=True)
    for span in timeline.spans:
        label = f"#{span.node_id} {span.title or span.node_type or ''}".rstrip()
        table.add_row(
            escape(label),
            Text(span.status, style=STATUS_STYLES.get(span.status, "")),
            f"{span.offset_ns / 1e6:.1f}",
            "" if span.status == "cached" else f"{span.duration_ns / 1e6:.1f}",
            waterfall_bar(span, total, width),
        )
    out.print(table)
    for span in timeline.spans:
        if span.status == "failed":
            out.print(
                Text(
                    f"#{span.node_id} {span.node_type}: {span.error_type}: {span.error_message}",
                    style="red",
                )
            )


def waterfall_bar(span: NodeSpan, total_ns: int, width: int) -> Text:
    """One bar: offset and length proportional to time; at least one cell, so a fast node is
    still visible. Cached nodes are a marker (they took no time), failed ones red."""
    start = min(width - 1, max(0, int(span.offset_ns / total_ns * width)))
    if span.status == "cached":
        return Text(" " * start + "◆", style=STATUS_STYLES["cached"])
    length = max(1, round(span.duration_ns / total_ns * width))
    length = min(length, width - start)
    glyph = "✗" if span.status == "failed" else "█"
    bar = "█" * (length - 1) + glyph if span.status == "failed" else glyph * length
    return Text(" " * start + bar, style=STATUS_STYLES.get(span.status, ""))
