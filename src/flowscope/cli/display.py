"""What `flowscope run` shows: live per-node progress, then a timing table and the outputs."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from flowscope.storage.directories import Directories
from flowscope.telemetry.events import Action, Event

if TYPE_CHECKING:  # the engine imports torch: not needed to print help or search logs
    from flowscope.engine.job import JobResult
    from flowscope.graph.validation import ValidationResult

# Piped output (logs, CI, tests) is not wrapped at rich's default of 80 columns.
PIPE_WIDTH = 200


def make_console(*, stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else PIPE_WIDTH
    return Console(stderr=stderr, width=width, soft_wrap=True)


class LiveProgress:
    """An event subscriber driving two bars: nodes done, and the running node's own steps."""

    def __init__(self, console: Console) -> None:
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self._nodes = self.progress.add_task("nodes", total=None)
        self._steps = self.progress.add_task("", total=None, visible=False)
        self._handlers: dict[Action, Callable[[Event], None]] = {
            Action.JOB_STARTED: self._job_started,
            Action.NODE_STARTED: self._node_started,
            Action.NODE_SUCCEEDED: self._node_done,
            Action.NODE_CACHED: self._node_done,
            Action.NODE_BLOCKED: self._node_done,
            Action.NODE_PROGRESS: self._node_progress,
        }

    def __enter__(self) -> LiveProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.progress.stop()

    def __call__(self, event: Event) -> None:
        handler = self._handlers.get(event.action)
        if handler is not None:
            handler(event)

    def _job_started(self, event: Event) -> None:
        self.progress.update(self._nodes, total=event.get("job.nodes_total"), completed=0)

    def _node_started(self, event: Event) -> None:
        label = event.get("node.title") or event.get("node.type")
        self.progress.update(self._nodes, description=f"#{event.get('node.id')} {label}")
        self.progress.update(self._steps, visible=False)

    def _node_done(self, event: Event) -> None:
        self.progress.advance(self._nodes)
        self.progress.update(self._steps, visible=False)

    def _node_progress(self, event: Event) -> None:
        self.progress.update(
            self._steps,
            description=f"  {event.get('node.type')} steps",
            completed=event.get("node.progress.value"),
            total=event.get("node.progress.max"),
            visible=True,
        )


def print_validation_errors(console: Console, result: ValidationResult) -> None:
    error = result.error or {}
    console.print(f"[bold red]Invalid workflow:[/] {error.get('message', 'validation failed')}")
    if not result.node_errors and error.get("details"):
        console.print(f"  {error['details']}")
    for node_id, entry in result.node_errors.items():
        console.print(f"  node [bold]#{node_id}[/] ({entry['class_type']}):")
        for node_error in entry["errors"]:
            console.print(f"    - {node_error['message']}: {node_error['details']}")


def print_failure(console: Console, result: JobResult) -> None:
    error = result.error or {}
    if result.status == "interrupted":
        console.print(
            f"[yellow]Interrupted[/] at node #{error.get('node_id')} ({error.get('node_type')})"
        )
        return
    console.print(
        f"[bold red]Node #{error.get('node_id')} ({error.get('node_type')}) failed:[/] "
        f"{error.get('exception_type')}: {error.get('exception_message')}"
    )
    for name, values in (error.get("current_inputs") or {}).items():
        console.print(f"    {name} = {values[0] if len(values) == 1 else values}")


def timing_table(result: JobResult, limit: int | None = 30) -> Table:
    """Every node's timing; past `limit` nodes, only the slowest (and failed) ones, in run order."""
    records = result.nodes
    hidden = 0
    if limit is not None and len(records) > limit:
        slowest = sorted(records, key=lambda r: r.duration_ms, reverse=True)[:limit]
        keep = {id(r) for r in slowest} | {id(r) for r in records if r.status == "failed"}
        hidden = len(records) - len(keep)
        records = [r for r in records if id(r) in keep]
    table = Table(title=f"job {result.job_id} — {result.status} in {result.duration_ms:.1f} ms")
    table.add_column("node", justify="right")
    table.add_column("type")
    table.add_column("title")
    table.add_column("status")
    table.add_column("ms", justify="right")
    table.add_column("peak RSS", justify="right")
    styles = {"cached": "dim", "failed": "red", "blocked": "yellow"}
    for record in records:
        peak = f"{record.memory_peak_bytes / 2**20:.0f} MiB" if record.memory_peak_bytes else ""
        ms = f"{record.duration_ms:.2f}" if record.status not in ("cached", "blocked") else ""
        table.add_row(
            record.node_id,
            record.class_type,
            record.title or "",
            record.status,
            ms,
            peak,
            style=styles.get(record.status),
        )
    if hidden:
        cached = sum(1 for r in result.nodes if r.status == "cached")
        table.caption = (
            f"{hidden} faster nodes not shown ({cached} of all {len(result.nodes)} were cached); "
            "--all-nodes lists every node"
        )
    return table


def output_lines(result: JobResult, directories: Directories) -> list[str]:
    """The output nodes' results: text shown by preview nodes and the paths of saved files."""
    lines: list[str] = []
    for node_id, ui in result.outputs.items():
        for text in ui.get("text", []) or []:
            lines.append(f"#{node_id} text: {text}")
        for item in _files(ui):
            folder = directories.for_type(item.get("type", "output"))
            path = Path(folder, item.get("subfolder", ""), item.get("filename", ""))
            lines.append(f"#{node_id} {item.get('type', 'output')}: {path}")
        for key, values in ui.items():
            if key not in ("text", "images", "animated", "audio", "video"):
                lines.append(f"#{node_id} {key}: {values}")
    return lines


def _files(ui: dict[str, Any]) -> list[dict[str, Any]]:
    files: list[dict[str, Any]] = []
    for key in ("images", "audio", "video"):
        for item in ui.get(key, []) or []:
            if isinstance(item, dict) and "filename" in item:
                files.append(item)
    return files
