"""The Stable Diffusion node pack: ComfyUI's checkpoint, LoRA, ControlNet, text-encoding,
latent, VAE and sampler nodes, on diffusers' model classes with our own samplers.

`sd_nodes()` is the only entry point. Loader nodes get subclasses bound to the given
`ModelManager`, so two flowscope instances in one process never share model folders.

Node modules import only light modules at top level: torch (and diffusers, transformers) loads
when a node's FUNCTION runs, directly or through `denoise.py`, `guidance.py`, `sampling/` and
`models/`, and the combo lists live in the torch-free `choices.py`. Listing the nodes stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flowscope.nodes.sd import conditioning, latents, loaders, sampler_nodes, vae_nodes

if TYPE_CHECKING:
    from flowscope.models.manager import ModelManager

__all__ = ["sd_nodes"]


def sd_nodes(models: ModelManager) -> tuple[dict[str, type], dict[str, str]]:
    """(NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS) for the SD pack."""
    mappings: dict[str, type] = {}
    display_names: dict[str, str] = {}
    for module in (loaders, conditioning, latents, sampler_nodes, vae_nodes):
        for cls in module.NODE_CLASSES:
            if issubclass(cls, loaders.ModelLoaderNode):
                # Same __name__ as the base: the class name is the class_type users see.
                cls = type(cls.__name__, (cls,), {"models": models, "__module__": cls.__module__})
            mappings[cls.__name__] = cls
        display_names.update(module.DISPLAY_NAMES)
    return mappings, display_names
