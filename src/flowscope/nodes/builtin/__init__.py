"""The built-in node pack: ComfyUI's core utility and image nodes as V1 ("classic") node classes.

`builtin_nodes()` is the only entry point. Nodes that touch files get subclasses bound to the
given `Directories`, so two flowscope instances in one process never share folders.
"""

from __future__ import annotations

from flowscope.nodes.builtin import images, masks, preview, primitives, strings
from flowscope.nodes.builtin import math as math_nodes
from flowscope.nodes.builtin.image_files import LoadImage, PreviewImage, SaveImage
from flowscope.storage.directories import Directories

__all__ = ["builtin_nodes"]

_FILE_DISPLAY_NAMES = {
    "LoadImage": "Load Image",
    "SaveImage": "Save Image",
    "PreviewImage": "Preview Image",
}


def builtin_nodes(
    directories: Directories, *, save_metadata: bool = True
) -> tuple[dict[str, type], dict[str, str]]:
    """(NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS) for the built-in pack.

    LoadImage, SaveImage and PreviewImage are bound to `directories`; `save_metadata=False`
    leaves the prompt and workflow out of saved PNGs (ComfyUI's `--disable-metadata`).
    """
    bound: dict[str, object] = {"directories": directories, "save_metadata": save_metadata}
    file_nodes: tuple[type, ...] = tuple(
        # Same __name__ as the base, so the class name is the class_type users see in errors.
        type(base.__name__, (base,), {**bound, "__module__": base.__module__})
        for base in (LoadImage, SaveImage, PreviewImage)
    )
    mappings: dict[str, type] = {}
    display_names: dict[str, str] = {}
    for module in (primitives, math_nodes, strings, preview, images, masks):
        mappings.update({cls.__name__: cls for cls in module.NODE_CLASSES})
        display_names.update(module.DISPLAY_NAMES)
    mappings.update({cls.__name__: cls for cls in file_nodes})
    display_names.update(_FILE_DISPLAY_NAMES)
    return mappings, display_names
