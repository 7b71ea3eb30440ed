"""The `flowscope` command line: `run` a workflow, list `nodes`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from flowscope import __version__

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

    nodes = commands.add_parser("nodes", help="list the installed node types")
    common(nodes)
    nodes.add_argument("--json", action="store_true", help="print /object_info-shaped JSON")
    nodes.add_argument("--category", help="only nodes whose category starts with this")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "run":
        from flowscope.cli.run import run_command

        return run_command(args)
    if args.command == "nodes":
        from flowscope.cli.node_list import nodes_command

        return nodes_command(args)
    return 2


def entry() -> None:
    sys.exit(main())
