"""The `flowscope` command line: `run` a workflow, list `nodes`, search `logs`, node `stats`,
a job's `trace`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from flowscope import __version__
from flowscope.cli.model_options import add_model_arguments
from flowscope.cli.telemetry_options import add_telemetry_arguments

DEFAULT_BASE_DIRECTORY = "./flowscope-data"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flowscope",
        description="Run ComfyUI workflows with every step observable.",
    )
    parser.add_argument("--version", action="version", version=f"flowscope {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--base-directory",
            default=DEFAULT_BASE_DIRECTORY,
            help="data folder with models/, custom_nodes/, input/, output/, temp/ "
            f"(default {DEFAULT_BASE_DIRECTORY})",
        )

    run = commands.add_parser(
        "run",
        help="validate and run a workflow (API prompt or UI workflow JSON)",
        description="Validate and run a workflow file saved from the editor (UI format) or "
        "exported for the API, with live per-node progress and a timing table.",
    )
    common(run)
    run.add_argument("workflow", help="path to the workflow JSON ('-' reads standard input)")
    run.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="NODE.INPUT=VALUE",
        help="override an input; NODE is a node id or title, VALUE is JSON or plain text "
        "(repeatable), e.g. --set 3.seed=42 --set 'Save Image.filename_prefix=run1'",
    )
    run.add_argument("--output-directory", help="where SaveImage writes (default BASE/output)")
    run.add_argument("--input-directory", help="where LoadImage reads (default BASE/input)")
    run.add_argument("--temp-directory", help="where PreviewImage writes (default BASE/temp)")
    run.add_argument(
        "--disable-metadata", action="store_true", help="do not embed the workflow in PNGs"
    )
    run.add_argument(
        "--cache",
        default="classic",
        metavar="POLICY",
        help="output cache policy: classic, none, 'lru N' or 'ram [GB]' (default classic)",
    )
    run.add_argument(
        "--repeat",
        type=int,
        default=1,
        metavar="N",
        help="run the workflow N times in one process (later runs show what the cache saves)",
    )
    run.add_argument("--json", action="store_true", help="print the result as JSON only")
    run.add_argument(
        "--all-nodes",
        action="store_true",
        help="list every node in the timing table (by default, past 30 nodes, the slowest 30)",
    )
    run.add_argument("--quiet", action="store_true", help="no live progress display")
    add_model_arguments(run)
    add_telemetry_arguments(run)

    from flowscope.cli.serve import add_serve_arguments, add_worker_arguments

    serve = commands.add_parser(
        "serve",
        help="start the ComfyUI-compatible server with the editor (http://127.0.0.1:8188)",
        description="Serve the ComfyUI HTTP + WebSocket API and the official editor, with a "
        "durable job queue and history, /metrics, /healthz and /readyz.",
    )
    common(serve)
    add_serve_arguments(serve)
    worker = commands.add_parser(
        "worker",
        help="execute jobs from the job store in this process (next to `flowscope serve`)",
        description="Take jobs from the same job store as a server and execute them here.",
    )
    common(worker)
    add_worker_arguments(worker)

    nodes = commands.add_parser("nodes", help="list the installed node types")
    common(nodes)
    nodes.add_argument("--json", action="store_true", help="print /object_info-shaped JSON")
    nodes.add_argument("--category", help="only nodes whose category starts with this")

    _add_log_commands(commands, common)
    from flowscope.cli.models import add_models_command

    add_models_command(commands)
    return parser


def _add_log_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: Callable[[argparse.ArgumentParser], None],
) -> None:
    """`logs`, `stats`, `trace`: read the local log store (BASE/logstore.db)."""

    def window(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--since", metavar="T", help="only events since T: 15m, 2h, 1d, 1w or a date"
        )
        sub.add_argument("--until", metavar="T", help="only events before T (same forms)")

    logs = commands.add_parser(
        "logs",
        help="search the local log store with KQL, or import JSON-lines logs",
        usage="flowscope logs [QUERY] [--since T] [--until T] [--limit N] [--json] "
        "[--base-directory DIR]\n"
        "       flowscope logs import FILE [FILE ...]",
        description='Search events with Kibana Query Language: field:value, field:"a phrase", '
        "field:(a or b), and/or/not, parentheses, ranges (duration_ms > 500, "
        "@timestamp >= now-1d), wildcards (node:KSampler*), field:* (exists); a bare word or "
        '"phrase" searches message and error.message. Example: '
        "flowscope logs 'workflow_id:wf-8a2f1e9b AND level:ERROR'. "
        "`logs import FILE...` loads JSON-lines files (duplicates are skipped).",
    )
    common(logs)
    logs.add_argument("query", nargs="?", default="", help="a KQL query (quote it)")
    logs.add_argument("files", nargs="*", help=argparse.SUPPRESS)
    window(logs)
    logs.add_argument("--limit", type=int, default=50, metavar="N", help="at most N (default 50)")
    logs.add_argument("--oldest-first", action="store_true", help="oldest events first")
    logs.add_argument("--json", action="store_true", help="print JSON lines (one per event)")

    stats = commands.add_parser(
        "stats",
        help="per-node-type statistics from the log store",
        description="Per node type: executions, error rate, cache-hit rate, mean / p50 / p95 / "
        "max duration.",
    )
    common(stats)
    stats.add_argument("subject", choices=["nodes"], help="what to summarise")
    window(stats)
    stats.add_argument("--json", action="store_true", help="print JSON")

    trace = commands.add_parser(
        "trace",
        help="draw a job's node waterfall from the log store",
        description="One bar per node execution, placed and sized by time; cached and failed "
        "nodes marked.",
    )
    common(trace)
    trace.add_argument("job_id", metavar="JOB_ID", help="the job id (or a unique prefix of it)")
    trace.add_argument("--json", action="store_true", help="print the timeline as JSON")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "run":
        from flowscope.cli.run import run_command

        return run_command(args)
    if args.command in ("serve", "worker"):
        from flowscope.cli import serve

        return serve.serve_command(args) if args.command == "serve" else serve.worker_command(args)
    if args.command == "nodes":
        from flowscope.cli.node_list import nodes_command

        return nodes_command(args)
    if args.command in ("logs", "stats", "trace"):
        from flowscope.cli import logs

        command = {
            "logs": logs.logs_command,
            "stats": logs.stats_command,
            "trace": logs.trace_command,
        }[args.command]
        return command(args)
    if args.command == "models":
        from flowscope.cli.models import models_command

        return models_command(args)
    return 2


def entry() -> None:
    sys.exit(main())
