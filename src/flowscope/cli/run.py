"""`flowscope run WORKFLOW.json`: validate, run with live progress, report timings and outputs."""

from __future__ import annotations

import argparse
import json
import sys
import threading
from pathlib import Path
from typing import Any

from rich.console import Console

from flowscope.cli.display import (
    LiveProgress,
    make_console,
    output_lines,
    print_failure,
    print_validation_errors,
    timing_table,
)
from flowscope.cli.model_options import model_manager
from flowscope.cli.overrides import OverrideError, apply_overrides, parse_override
from flowscope.cli.startup import load_nodes
from flowscope.cli.telemetry_options import telemetry_options
from flowscope.engine import Executor, JobRequest, JobResult, cache_from_spec
from flowscope.engine.gc_tuning import tune_collector
from flowscope.graph.document import DocumentError, load_document
from flowscope.graph.validation import validate_prompt
from flowscope.models.folders import ModelFolders
from flowscope.storage.directories import Directories
from flowscope.telemetry.bus import EventBus
from flowscope.telemetry.setup import start_telemetry

EXIT_FAILED = 1
EXIT_INVALID = 2
EXIT_INTERRUPTED = 130


def run_command(args: argparse.Namespace) -> int:
    console = make_console(stderr=True)
    out = make_console()
    directories = Directories.under(
        args.base_directory,
        input=args.input_directory,
        output=args.output_directory,
        temp=args.temp_directory,
    )
    directories.ensure()
    try:
        document = _read_json(args.workflow)
        overrides = [parse_override(text) for text in args.overrides]
        cache = cache_from_spec(args.cache)
        telemetry_config = telemetry_options(args, directories)
    except (OSError, ValueError) as exc:
        console.print(f"[bold red]error:[/] {exc}")
        return EXIT_INVALID

    models = model_manager(args, ModelFolders.from_directories(directories))
    registry = load_nodes(
        directories,
        console,
        save_metadata=not args.disable_metadata,
        quiet=args.json,
        models=models,
    )

    try:
        loaded = load_document(document, registry.node_info)
        prompt = apply_overrides(loaded.prompt, overrides)
    except (DocumentError, OverrideError) as exc:
        console.print(f"[bold red]error:[/] {exc}")
        return EXIT_INVALID
    validation = validate_prompt(prompt, registry.schema)
    if not validation.ok:
        if args.json:
            out.print_json(data={"error": validation.error, "node_errors": validation.node_errors})
        else:
            print_validation_errors(console, validation)
        return EXIT_INVALID
    if validation.node_errors and not args.json:
        console.print("[yellow]Some outputs are invalid and will be skipped:[/]")
        print_validation_errors(console, validation)

    extra_data: dict[str, Any] = {}
    if loaded.workflow is not None:
        extra_data["extra_pnginfo"] = {"workflow": loaded.workflow}
    bus = EventBus()
    models.attach_bus(bus)  # model.loaded / cache_hit events in the log and the live display
    executor = Executor(registry, bus=bus, cache=cache, log_inputs=args.log_inputs)
    try:
        telemetry = start_telemetry(bus, telemetry_config)
    except (OSError, ValueError) as exc:
        console.print(f"[bold red]error:[/] cannot start telemetry: {exc}")
        return EXIT_INVALID
    tune_collector()  # after loading: the code and node classes are long-lived
    if telemetry.metrics_server is not None and not args.json:
        console.print(f"metrics: {telemetry.metrics_server.url}", highlight=False)

    live = not (args.quiet or args.json or args.log_console)
    result: JobResult | None = None
    try:
        for _ in range(max(1, args.repeat)):
            request = JobRequest(
                prompt=validation.prompt,
                outputs=validation.outputs,
                extra_data=extra_data,
                workflow_id=loaded.workflow_id,
            )
            result = _execute(executor, request, bus, console, live=live)
            if not args.json:
                console.print(timing_table(result, None if args.all_nodes else 30))
            if result.status != "success":
                break
    finally:
        telemetry.close()  # the event log and the log store are complete when we exit
    assert result is not None

    if args.json:
        out.print_json(data=_result_json(result))
    else:
        for line in output_lines(result, directories):
            out.print(line, highlight=False, soft_wrap=True)
        if result.status != "success":
            print_failure(console, result)
    if result.status == "interrupted":
        return EXIT_INTERRUPTED
    return 0 if result.status == "success" else EXIT_FAILED


def _execute(
    executor: Executor, request: JobRequest, bus: EventBus, console: Console, live: bool
) -> JobResult:
    """Run in a worker thread so that Ctrl-C interrupts the job cleanly instead of killing it."""
    outcome: list[JobResult] = []
    failure: list[BaseException] = []

    def work() -> None:
        try:
            outcome.append(executor.execute(request))
        except BaseException as exc:  # re-raised in the main thread
            failure.append(exc)

    display = LiveProgress(console) if live and console.is_terminal else None
    unsubscribe = bus.subscribe(display) if display is not None else None
    worker = threading.Thread(target=work, name="flowscope-job", daemon=True)
    try:
        if display is not None:
            display.__enter__()
        worker.start()
        while worker.is_alive():
            try:
                worker.join(0.1)
            except KeyboardInterrupt:
                console.print("[yellow]Interrupting…[/]")
                executor.interrupt()
    finally:
        if display is not None:
            display.__exit__(None, None, None)
        if unsubscribe is not None:
            unsubscribe()
    if failure:
        raise failure[0]
    return outcome[0]


def _read_json(path: str) -> Any:
    text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from exc


def _result_json(result: JobResult) -> dict[str, Any]:
    return {
        "job_id": result.job_id,
        "status": result.status,
        "duration_ms": round(result.duration_ms, 3),
        "outputs": result.outputs,
        "nodes": [
            {
                "node_id": r.node_id,
                "class_type": r.class_type,
                "title": r.title,
                "status": r.status,
                "duration_ms": round(r.duration_ms, 3),
                "memory_peak_bytes": r.memory_peak_bytes,
            }
            for r in result.nodes
        ],
        "error": result.error,
    }
