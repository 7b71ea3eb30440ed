"""Start-up shared by the commands: custom node packs' prestartup scripts, then the catalog."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from flowscope.nodes.catalog import load_catalog
from flowscope.nodes.loader import (
    format_import_times,
    format_prestartup_times,
    run_prestartup_scripts,
)
from flowscope.nodes.registry import NodeRegistry
from flowscope.storage.directories import Directories

if TYPE_CHECKING:
    from flowscope.models.manager import ModelManager


def load_nodes(
    directories: Directories,
    console: Console,
    *,
    save_metadata: bool = True,
    quiet: bool = False,
    extra_custom_node_folders: Sequence[Path] = (),
    models: ModelManager | None = None,
) -> NodeRegistry:
    """Run prestartup scripts and load every node pack, reporting each pack's time and errors
    (failed packs are reported with their traceback; the others load regardless). The Stable
    Diffusion pack loads through `models` (default: the base directory's folders, defaults)."""
    folders = [directories.custom_nodes, *extra_custom_node_folders]
    prestartup = run_prestartup_scripts(folders)
    registry, packs = load_catalog(
        directories,
        save_metadata=save_metadata,
        extra_custom_node_folders=extra_custom_node_folders,
        models=models,
    )
    if not quiet:
        if prestartup:
            console.print(format_prestartup_times(prestartup), highlight=False)
        if packs:
            console.print(format_import_times(packs), highlight=False)
    for script in prestartup:
        if script.error:
            console.print(f"[red]Prestartup script {script.script} failed:[/]\n{script.error}")
    for pack in packs:
        if pack.error:
            console.print(f"[red]Cannot import {pack.path}:[/]\n{pack.error}")
    return registry
