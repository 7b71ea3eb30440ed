"""Node classes for validation tests: one per input rule of spec §3.1 (no execution needed)."""

from __future__ import annotations

from typing import Any

from flowscope.nodes.registry import NodeRegistry

MANY_CHOICES = [f"choice_{i}" for i in range(25)]
# What each VALIDATE_INPUTS hook received, for assertions: (class name, kwargs).
VALIDATE_CALLS: list[tuple[str, dict[str, Any]]] = []


class _Node:
    RETURN_TYPES: tuple[str, ...] = ()
    FUNCTION = "run"

    def run(self, **inputs: Any) -> tuple[Any, ...]:
        return ()


class IntSource(_Node):
    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"value": ("INT", {"default": 0})}}

    RETURN_TYPES = ("INT",)


class FloatSource(_Node):
    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"value": ("FLOAT", {"default": 0.0})}}

    RETURN_TYPES = ("FLOAT",)


class ImageSource(_Node):
    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {}}

    RETURN_TYPES = ("IMAGE", "MASK")


class AnySource(_Node):
    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {}}

    RETURN_TYPES = ("*",)


class UnionSource(_Node):
    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {}}

    RETURN_TYPES = ("FLOAT,INT", "STRING,LATENT")


class Widgets(_Node):
    """Every built-in constant check: coercion, ranges, both combo styles, a long combo."""

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "width": ("INT", {"default": 512, "min": 1, "max": 16384, "step": 1}),
                "scale": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 10.0}),
                "flag": ("BOOLEAN", {"default": True}),
                "text": ("STRING", {"default": ""}),
                "mode": (["fast", "slow"],),
            },
            "optional": {
                "style": ("COMBO", {"options": ["plain", "fancy"], "default": "plain"}),
                "pick": (MANY_CHOICES,),
                "values": ("*",),
            },
        }

    RETURN_TYPES = ("INT",)


class Sink(_Node):
    """An output node taking an INT (and optionally anything)."""

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"value": ("INT",)}, "optional": {"extra": ("*",)}}

    OUTPUT_NODE = True


class ImageSink(_Node):
    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"image": ("IMAGE",)}}

    OUTPUT_NODE = True


class AnySink(_Node):
    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"value": ("*",)}}

    OUTPUT_NODE = True


class NumberSink(_Node):
    """A comma-union input type."""

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"value": ("INT,FLOAT",)}}

    OUTPUT_NODE = True


class Pass(_Node):
    """INT in, INT out: for chains."""

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"value": ("INT",)}}

    RETURN_TYPES = ("INT",)


class NamedCheck(_Node):
    """VALIDATE_INPUTS names `low` only: `low` skips the built-in range check, `high` does not."""

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "low": ("INT", {"min": 0, "max": 10}),
                "high": ("INT", {"min": 0, "max": 10}),
            }
        }

    @classmethod
    def VALIDATE_INPUTS(cls, low: int) -> bool | str:
        VALIDATE_CALLS.append(("NamedCheck", {"low": low}))
        return True if low != 13 else "thirteen is unlucky"

    RETURN_TYPES = ("INT",)
    OUTPUT_NODE = True


class KwargsCheck(_Node):
    """VALIDATE_INPUTS with **kwargs: every built-in constant check is off."""

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "low": ("INT", {"min": 0, "max": 10}),
                "mode": (["a", "b"],),
            },
            "optional": {"linked": ("INT",)},
        }

    @classmethod
    def VALIDATE_INPUTS(cls, **kwargs: Any) -> bool:
        VALIDATE_CALLS.append(("KwargsCheck", dict(kwargs)))
        return True

    OUTPUT_NODE = True


class TypesCheck(_Node):
    """VALIDATE_INPUTS takes `input_types`: the link type check is its job."""

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"image": ("IMAGE",), "value": ("INT", {"default": 0})}}

    @classmethod
    def VALIDATE_INPUTS(cls, input_types: dict[str, str], value: int) -> bool | str:
        VALIDATE_CALLS.append(("TypesCheck", {"input_types": input_types, "value": value}))
        if input_types.get("image") == "MASK":
            return "masks are not images"
        return True

    OUTPUT_NODE = True


class FalseCheck(_Node):
    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"value": ("INT",)}}

    @classmethod
    def VALIDATE_INPUTS(cls, value: int) -> bool:
        return False

    OUTPUT_NODE = True


class RaisingCheck(_Node):
    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"value": ("INT",)}}

    @classmethod
    def VALIDATE_INPUTS(cls, value: int) -> bool:
        raise KeyError("9")

    OUTPUT_NODE = True


class BrokenTypes(_Node):
    """INPUT_TYPES itself raises (a custom node reading a missing file, say)."""

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        raise FileNotFoundError("models/missing.safetensors")

    RETURN_TYPES = ("INT",)


NODE_CLASSES: dict[str, type] = {
    cls.__name__: cls
    for cls in (
        IntSource,
        FloatSource,
        ImageSource,
        AnySource,
        UnionSource,
        Widgets,
        Sink,
        ImageSink,
        AnySink,
        NumberSink,
        Pass,
        NamedCheck,
        KwargsCheck,
        TypesCheck,
        FalseCheck,
        RaisingCheck,
        BrokenTypes,
    )
}


def registry() -> NodeRegistry:
    nodes = NodeRegistry()
    nodes.register_mappings(NODE_CLASSES, python_module="tests", builtin=True)
    return nodes
