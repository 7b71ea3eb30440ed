"""Primitive value nodes: a widget whose value becomes an output (ComfyUI's `utils/primitive`)."""

from __future__ import annotations

import sys
from typing import Any

# PrimitiveInt/PrimitiveFloat accept the signed 64-bit range, as in ComfyUI.
INT64_MAX = sys.maxsize

CATEGORY = "utils/primitive"


class PrimitiveString:
    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"value": ("STRING", {"multiline": False})}}

    RETURN_TYPES = ("STRING",)
    FUNCTION = "execute"
    CATEGORY = CATEGORY

    def execute(self, value: str) -> tuple[str]:
        return (value,)


class PrimitiveStringMultiline:
    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"value": ("STRING", {"multiline": True})}}

    RETURN_TYPES = ("STRING",)
    FUNCTION = "execute"
    CATEGORY = CATEGORY

    def execute(self, value: str) -> tuple[str]:
        return (value,)


class PrimitiveInt:
    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "value": (
                    "INT",
                    {"min": -INT64_MAX, "max": INT64_MAX, "control_after_generate": True},
                )
            }
        }

    RETURN_TYPES = ("INT",)
    FUNCTION = "execute"
    CATEGORY = CATEGORY

    def execute(self, value: int) -> tuple[int]:
        return (value,)


class PrimitiveFloat:
    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"value": ("FLOAT", {"min": -INT64_MAX, "max": INT64_MAX})}}

    RETURN_TYPES = ("FLOAT",)
    FUNCTION = "execute"
    CATEGORY = CATEGORY

    def execute(self, value: float) -> tuple[float]:
        return (value,)


class PrimitiveBoolean:
    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"value": ("BOOLEAN", {})}}

    RETURN_TYPES = ("BOOLEAN",)
    FUNCTION = "execute"
    CATEGORY = CATEGORY

    def execute(self, value: bool) -> tuple[bool]:
        return (value,)


NODE_CLASSES: tuple[type, ...] = (
    PrimitiveString,
    PrimitiveStringMultiline,
    PrimitiveInt,
    PrimitiveFloat,
    PrimitiveBoolean,
)

DISPLAY_NAMES = {
    "PrimitiveString": "String",
    "PrimitiveStringMultiline": "String (Multiline)",
    "PrimitiveInt": "Int",
    "PrimitiveFloat": "Float",
    "PrimitiveBoolean": "Boolean",
}
