"""Conditioning nodes: prompt encoding, the last CLIP layer, combining conditionings and
attaching ControlNets to them (the CONDITIONING list format custom nodes expect)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from flowscope.models.components import ControlNet, TextEncoder
    from flowscope.nodes.sd.guidance import Conditioning

_NO_CLIP = (
    "ERROR: clip input is invalid: None\n\nIf the clip is from a checkpoint loader node your "
    "checkpoint does not contain a valid clip or text encoder model."
)


class CLIPTextEncode:
    DESCRIPTION = (
        "Encodes a text prompt with a CLIP model into a conditioning that guides the diffusion "
        "model. (text:1.2) weights a part; embedding:name uses a textual inversion."
    )

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "text": (
                    "STRING",
                    {
                        "multiline": True,
                        "dynamicPrompts": True,
                        "tooltip": "The text to be encoded.",
                    },
                ),
                "clip": ("CLIP", {"tooltip": "The CLIP model used for encoding the text."}),
            }
        }

    RETURN_TYPES = ("CONDITIONING",)
    OUTPUT_TOOLTIPS = ("A conditioning containing the embedded text used to guide the model.",)
    FUNCTION = "encode"
    CATEGORY = "conditioning"

    def encode(self, clip: TextEncoder | None, text: str) -> tuple[Conditioning]:
        if clip is None:
            raise RuntimeError(_NO_CLIP)
        cond, pooled = clip.encode(text)
        return ([[cond, {"pooled_output": pooled}]],)


class CLIPSetLastLayer:
    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "clip": ("CLIP",),
                "stop_at_clip_layer": ("INT", {"default": -1, "min": -24, "max": -1, "step": 1}),
            }
        }

    RETURN_TYPES = ("CLIP",)
    FUNCTION = "set_last_layer"
    CATEGORY = "conditioning"

    def set_last_layer(self, clip: TextEncoder, stop_at_clip_layer: int) -> tuple[TextEncoder]:
        return (clip.with_last_layer(stop_at_clip_layer),)


class ConditioningCombine:
    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {"conditioning_1": ("CONDITIONING",), "conditioning_2": ("CONDITIONING",)}
        }

    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "combine"
    CATEGORY = "conditioning"

    def combine(
        self, conditioning_1: Conditioning, conditioning_2: Conditioning
    ) -> tuple[Conditioning]:
        return (conditioning_1 + conditioning_2,)


def with_control(
    conditioning: Conditioning,
    control_net: ControlNet,
    image: torch.Tensor,
    strength: float,
    start_percent: float,
    end_percent: float,
) -> Conditioning:
    """A copy of `conditioning` whose entries also apply `control_net` (chained after any
    ControlNet already there)."""
    # Imported here: the components module loads torch, which listing the nodes must not.
    from flowscope.models.components import ControlHint

    result = []
    for cond, options in conditioning:
        options = dict(options)
        options["control"] = ControlHint(
            control_net, image, strength, start_percent, end_percent, options.get("control")
        )
        result.append([cond, options])
    return result


class ControlNetApply:
    DEPRECATED = True

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "conditioning": ("CONDITIONING",),
                "control_net": ("CONTROL_NET",),
                "image": ("IMAGE",),
                "strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 10.0, "step": 0.01}),
            }
        }

    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "apply_controlnet"
    CATEGORY = "conditioning/controlnet"

    def apply_controlnet(
        self,
        conditioning: Conditioning,
        control_net: ControlNet,
        image: torch.Tensor,
        strength: float,
    ) -> tuple[Conditioning]:
        if strength == 0:
            return (conditioning,)
        return (with_control(conditioning, control_net, image, strength, 0.0, 1.0),)


class ControlNetApplyAdvanced:
    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "positive": ("CONDITIONING",),
                "negative": ("CONDITIONING",),
                "control_net": ("CONTROL_NET",),
                "image": ("IMAGE",),
                "strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 10.0, "step": 0.01}),
                "start_percent": (
                    "FLOAT",
                    {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.001},
                ),
                "end_percent": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.001}),
            },
            "optional": {"vae": ("VAE",)},
        }

    RETURN_TYPES = ("CONDITIONING", "CONDITIONING")
    RETURN_NAMES = ("positive", "negative")
    FUNCTION = "apply_controlnet"
    CATEGORY = "conditioning/controlnet"

    def apply_controlnet(
        self,
        positive: Conditioning,
        negative: Conditioning,
        control_net: ControlNet,
        image: torch.Tensor,
        strength: float,
        start_percent: float,
        end_percent: float,
        vae: Any = None,
    ) -> tuple[Conditioning, Conditioning]:
        if strength == 0:
            return (positive, negative)
        return (
            with_control(positive, control_net, image, strength, start_percent, end_percent),
            with_control(negative, control_net, image, strength, start_percent, end_percent),
        )


NODE_CLASSES: tuple[type, ...] = (
    CLIPTextEncode,
    CLIPSetLastLayer,
    ConditioningCombine,
    ControlNetApply,
    ControlNetApplyAdvanced,
)

DISPLAY_NAMES = {
    "CLIPTextEncode": "CLIP Text Encode (Prompt)",
    "CLIPSetLastLayer": "CLIP Set Last Layer",
    "ConditioningCombine": "Conditioning (Combine)",
    "ControlNetApply": "Apply ControlNet (OLD)",
    "ControlNetApplyAdvanced": "Apply ControlNet",
}
