"""The full node catalog of one flowscope instance: built-ins first, then custom node packs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from flowscope.models.folders import ModelFolders
from flowscope.models.manager import ModelManager
from flowscope.nodes.builtin import builtin_nodes
from flowscope.nodes.loader import PackLoadResult, load_custom_node_packs
from flowscope.nodes.registry import NodeRegistry
from flowscope.nodes.sd import sd_nodes
from flowscope.storage.directories import Directories

BUILTIN_MODULE = "nodes"


def load_catalog(
    directories: Directories,
    *,
    save_metadata: bool = True,
    extra_custom_node_folders: Sequence[Path] = (),
    models: ModelManager | None = None,
) -> tuple[NodeRegistry, list[PackLoadResult]]:
    """A registry with the built-in packs (core nodes and the Stable Diffusion pack, loading
    through `models`) and every pack under `custom_nodes/` (and extras).

    Built-ins are registered first so that packs cannot override them.
    """
    if models is None:
        models = ModelManager(ModelFolders.from_directories(directories))
    registry = NodeRegistry()
    mappings, display_names = builtin_nodes(directories, save_metadata=save_metadata)
    sd_mappings, sd_display_names = sd_nodes(models)
    mappings.update(sd_mappings)
    display_names.update(sd_display_names)
    registry.register_mappings(mappings, display_names, python_module=BUILTIN_MODULE, builtin=True)
    folders = [directories.custom_nodes, *extra_custom_node_folders]
    return registry, load_custom_node_packs(registry, folders)
