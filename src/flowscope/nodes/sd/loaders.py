"""Loader nodes: checkpoints, VAEs, LoRAs and ControlNets by their name in the model folders.

The classes are unbound bases; `sd_nodes()` binds them to a `ModelManager`, which resolves names,
loads each file once through the memory-budget cache and refuses pickles unless allowed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from flowscope.models.components import (
        ControlNet,
        DiffusionModel,
        ImageAutoencoder,
        TextEncoder,
    )
    from flowscope.models.manager import ModelManager


class ModelLoaderNode:
    models: ClassVar[ModelManager]

    @classmethod
    def _files(cls, folder: str) -> list[str]:
        return cls.models.folders.filenames(folder)


class CheckpointLoaderSimple(ModelLoaderNode):
    DESCRIPTION = "Loads a diffusion model checkpoint; its UNet, text encoder and VAE."

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "ckpt_name": (
                    cls._files("checkpoints"),
                    {"tooltip": "The name of the checkpoint (model) to load."},
                )
            }
        }

    RETURN_TYPES = ("MODEL", "CLIP", "VAE")
    OUTPUT_TOOLTIPS = (
        "The model used for denoising latents.",
        "The CLIP model used for encoding text prompts.",
        "The VAE model used for encoding and decoding images to and from latent space.",
    )
    FUNCTION = "load_checkpoint"
    CATEGORY = "loaders"

    def load_checkpoint(
        self, ckpt_name: str
    ) -> tuple[DiffusionModel, TextEncoder, ImageAutoencoder]:
        return self.models.checkpoint(ckpt_name)


class VAELoader(ModelLoaderNode):
    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"vae_name": (cls._files("vae"),)}}

    RETURN_TYPES = ("VAE",)
    FUNCTION = "load_vae"
    CATEGORY = "loaders"

    def load_vae(self, vae_name: str) -> tuple[ImageAutoencoder]:
        return (self.models.vae(vae_name),)


class LoraLoader(ModelLoaderNode):
    DESCRIPTION = (
        "LoRAs modify diffusion and CLIP models, altering how latents are denoised "
        "(styles, characters). Several can be chained."
    )

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        strength = {"default": 1.0, "min": -100.0, "max": 100.0, "step": 0.01}
        return {
            "required": {
                "model": ("MODEL", {"tooltip": "The diffusion model the LoRA is applied to."}),
                "clip": ("CLIP", {"tooltip": "The CLIP model the LoRA is applied to."}),
                "lora_name": (cls._files("loras"), {"tooltip": "The name of the LoRA."}),
                "strength_model": ("FLOAT", {**strength, "tooltip": "Strength on the model."}),
                "strength_clip": ("FLOAT", {**strength, "tooltip": "Strength on CLIP."}),
            }
        }

    RETURN_TYPES = ("MODEL", "CLIP")
    OUTPUT_TOOLTIPS = ("The modified diffusion model.", "The modified CLIP model.")
    FUNCTION = "load_lora"
    CATEGORY = "loaders"

    def load_lora(
        self,
        model: DiffusionModel,
        clip: TextEncoder,
        lora_name: str,
        strength_model: float,
        strength_clip: float,
    ) -> tuple[DiffusionModel, TextEncoder]:
        if strength_model == 0 and strength_clip == 0:
            return (model, clip)
        lora = self.models.lora(lora_name, model.family)
        return (
            model.with_patches(lora.unet, strength_model),
            clip.with_patches(lora.text_encoders, strength_clip),
        )


class LoraLoaderModelOnly(ModelLoaderNode):
    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "model": ("MODEL",),
                "lora_name": (cls._files("loras"),),
                "strength_model": (
                    "FLOAT",
                    {"default": 1.0, "min": -100.0, "max": 100.0, "step": 0.01},
                ),
            }
        }

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "load_lora_model_only"
    CATEGORY = "loaders"

    def load_lora_model_only(
        self, model: DiffusionModel, lora_name: str, strength_model: float
    ) -> tuple[DiffusionModel]:
        if strength_model == 0:
            return (model,)
        lora = self.models.lora(lora_name, model.family)
        return (model.with_patches(lora.unet, strength_model),)


class ControlNetLoader(ModelLoaderNode):
    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"control_net_name": (cls._files("controlnet"),)}}

    RETURN_TYPES = ("CONTROL_NET",)
    FUNCTION = "load_controlnet"
    CATEGORY = "loaders"

    def load_controlnet(self, control_net_name: str) -> tuple[ControlNet]:
        return (self.models.controlnet(control_net_name),)


NODE_CLASSES: tuple[type, ...] = (
    CheckpointLoaderSimple,
    VAELoader,
    LoraLoader,
    LoraLoaderModelOnly,
    ControlNetLoader,
)

DISPLAY_NAMES = {
    "CheckpointLoaderSimple": "Load Checkpoint",
    "VAELoader": "Load VAE",
    "LoraLoader": "Load LoRA",
    "ControlNetLoader": "Load ControlNet Model",
}
