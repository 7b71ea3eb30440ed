"""`flowscope nodes`: the installed node types, as a table or as /object_info JSON."""

from __future__ import annotations

import argparse

from rich.table import Table

from flowscope.cli.display import make_console
from flowscope.cli.startup import load_nodes
from flowscope.storage.directories import Directories


def nodes_command(args: argparse.Namespace) -> int:
    directories = Directories.under(args.base_directory)
    err = make_console(stderr=True)
    registry = load_nodes(directories, err, quiet=args.json)
    info, errors = registry.object_info()
    if args.category:
        info = {k: v for k, v in info.items() if str(v["category"]).startswith(args.category)}
    console = make_console()
    if args.json:
        console.print_json(data=info)
        return 0
    table = Table(title=f"{len(info)} node types")
    for column in ("class_type", "display name", "category", "inputs", "outputs", "module"):
        table.add_column(column)
    for class_type, node in sorted(info.items(), key=lambda item: (item[1]["category"], item[0])):
        inputs = [
            *node["input_order"].get("required", []),
            *node["input_order"].get("optional", []),
        ]
        outputs = node["output_name"] or (["(output node)"] if node["output_node"] else [])
        table.add_row(
            class_type,
            node["display_name"],
            node["category"],
            ", ".join(inputs),
            ", ".join(map(str, outputs)),
            node["python_module"],
        )
    console.print(table)
    for error in errors:
        err.print(f"[red]{error.class_type} skipped:[/] {error.message}")
    return 0
