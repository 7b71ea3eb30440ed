"""PreviewAny: shows any value as text in the UI (ComfyUI's "Preview Any" output node)."""

from __future__ import annotations

import json
from typing import Any


def preview_text(source: Any) -> str:
    """The text ComfyUI shows for a value: strings as-is, numbers via str(), else JSON or str()."""
    if source is None:
        return "None"
    if isinstance(source, str):
        return source
    if isinstance(source, (int, float, bool)):
        return str(source)
    try:
        return json.dumps(source, indent=4)
    except Exception:  # tensors, models and other objects JSON cannot encode
        try:
            return str(source)
        except Exception:
            return "source exists, but could not be serialized."


class PreviewAny:
    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"source": ("*", {})}}

    RETURN_TYPES = ()
    FUNCTION = "main"
    OUTPUT_NODE = True
    CATEGORY = "utils"

    def main(self, source: Any = None) -> dict[str, Any]:
        return {"ui": {"text": [preview_text(source)]}}


NODE_CLASSES: tuple[type, ...] = (PreviewAny,)

DISPLAY_NAMES = {"PreviewAny": "Preview Any"}
