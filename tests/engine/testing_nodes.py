"""A small node pack for engine tests: every protocol feature, no tensors needed."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from flowscope.nodes import ExecutionBlocker, ProgressBar
from flowscope.nodes.graph_builder import GraphBuilder

CALLS: list[tuple[str, Any]] = []  # (class_type, argument) per FUNCTION call, for assertions


class StubInt:
    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"value": ("INT", {"default": 0, "min": -(2**63), "max": 2**63 - 1})}}

    RETURN_TYPES = ("INT",)
    FUNCTION = "run"
    CATEGORY = "testing"

    def run(self, value: int) -> tuple[int]:
        CALLS.append(("StubInt", value))
        return (value,)


class AddInt:
    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"a": ("INT", {"default": 0}), "b": ("INT", {"default": 1})}}

    RETURN_TYPES = ("INT",)
    FUNCTION = "add"
    CATEGORY = "testing"

    def add(self, a: int, b: int) -> tuple[int]:
        CALLS.append(("AddInt", (a, b)))
        return (a + b,)


class Collect:
    """An output node that shows its value."""

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"value": ("*",)}}

    RETURN_TYPES = ()
    FUNCTION = "show"
    OUTPUT_NODE = True
    CATEGORY = "testing"

    def show(self, value: Any) -> dict[str, Any]:
        CALLS.append(("Collect", value))
        return {"ui": {"value": [value]}}


class Fail:
    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"value": ("INT",), "message": ("STRING", {"default": "boom"})}}

    RETURN_TYPES = ("INT",)
    FUNCTION = "fail"

    def fail(self, value: int, message: str) -> tuple[int]:
        raise ValueError(message)


class LazySwitch:
    """Evaluates only the branch it chooses."""

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "choose_a": ("BOOLEAN", {"default": True}),
                "a": ("*", {"lazy": True}),
                "b": ("*", {"lazy": True}),
            }
        }

    RETURN_TYPES = ("*",)
    FUNCTION = "pick"

    def check_lazy_status(self, choose_a: bool, a: Any = None, b: Any = None) -> list[str]:
        return ["a"] if choose_a else ["b"]

    def pick(self, choose_a: bool, a: Any = None, b: Any = None) -> tuple[Any]:
        return (a if choose_a else b,)


class Gate:
    """Blocks its output when closed (ExecutionBlocker), with or without a message."""

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "value": ("*",),
                "open": ("BOOLEAN", {"default": True}),
                "message": ("STRING", {"default": ""}),
            }
        }

    RETURN_TYPES = ("*",)
    FUNCTION = "gate"

    def gate(self, value: Any, open: bool, message: str) -> tuple[Any]:
        if open:
            return (value,)
        return (ExecutionBlocker(message or None),)


class Range:
    """OUTPUT_IS_LIST: emits 0..count-1 as list items."""

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"count": ("INT", {"default": 3, "min": 0})}}

    RETURN_TYPES = ("INT",)
    OUTPUT_IS_LIST = (True,)
    FUNCTION = "make"

    def make(self, count: int) -> tuple[list[int]]:
        return (list(range(count)),)


class Sum:
    """INPUT_IS_LIST: one call with the whole list."""

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"values": ("INT",)}}

    RETURN_TYPES = ("INT",)
    INPUT_IS_LIST = True
    FUNCTION = "total"

    def total(self, values: list[int]) -> tuple[int]:
        return (sum(values),)


class Sleep:
    """An async node: several of them run concurrently."""

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"value": ("*",), "seconds": ("FLOAT", {"default": 0.1})}}

    RETURN_TYPES = ("*",)
    FUNCTION = "sleep"

    async def sleep(self, value: Any, seconds: float) -> tuple[Any]:
        await asyncio.sleep(seconds)
        return (value,)


class Steps:
    """Reports progress; used for interrupt and throttling tests."""

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"steps": ("INT", {"default": 10}), "delay": ("FLOAT", {"default": 0})}}

    RETURN_TYPES = ("INT",)
    FUNCTION = "run"

    def run(self, steps: int, delay: float) -> tuple[int]:
        bar = ProgressBar(steps)
        for _ in range(steps):
            if delay:
                time.sleep(delay)
            bar.update(1)
        return (steps,)


class Repeat:
    """Node expansion: builds a chain of `times` AddInt nodes and returns the last one's output."""

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"value": ("INT",), "times": ("INT", {"default": 2})}}

    RETURN_TYPES = ("INT",)
    FUNCTION = "expand"

    def expand(self, value: int, times: int) -> dict[str, Any]:
        graph = GraphBuilder()
        last: Any = value
        for _ in range(times):
            node = graph.node("AddInt", a=last, b=1)
            last = node.out(0)
        return {"result": (last,), "expand": graph.finalize()}


class SelfLoop:
    """Node expansion that links the new node back to the expanding node: a runtime cycle."""

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"value": ("INT",)}, "hidden": {"unique_id": "UNIQUE_ID"}}

    RETURN_TYPES = ("INT",)
    FUNCTION = "expand"

    def expand(self, value: int, unique_id: str) -> dict[str, Any]:
        graph = GraphBuilder()
        node = graph.node("AddInt", a=[unique_id, 0], b=1)
        return {"result": (node.out(0),), "expand": graph.finalize()}


class Always:
    """IS_CHANGED returns NaN: never cached."""

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"value": ("INT",)}}

    RETURN_TYPES = ("INT",)
    FUNCTION = "run"

    @classmethod
    def IS_CHANGED(cls, value: int) -> float:
        return float("nan")

    def run(self, value: int) -> tuple[int]:
        CALLS.append(("Always", value))
        return (value,)


class Hidden:
    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {},
            "hidden": {
                "prompt": "PROMPT",
                "unique_id": "UNIQUE_ID",
                "extra_pnginfo": "EXTRA_PNGINFO",
                "dynprompt": "DYNPROMPT",
            },
        }

    RETURN_TYPES = ()
    OUTPUT_NODE = True
    FUNCTION = "run"

    def run(self, prompt: Any, unique_id: str, extra_pnginfo: Any, dynprompt: Any) -> dict[str, Any]:
        return {
            "ui": {
                "unique_id": [unique_id],
                "nodes": [sorted(prompt)],
                "pnginfo": [extra_pnginfo],
                "dyn": [type(dynprompt).__name__],
            }
        }


class Counter:
    """Keeps state on its instance, which lives per (node id, class)."""

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"value": ("INT",)}}

    RETURN_TYPES = ("INT",)
    FUNCTION = "count"
    NOT_IDEMPOTENT = True

    def __init__(self) -> None:
        self.calls = 0

    def count(self, value: int) -> tuple[int]:
        self.calls += 1
        return (self.calls,)


class Validated:
    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"value": ("INT", {"min": 0, "max": 10})}}

    RETURN_TYPES = ("INT",)
    FUNCTION = "run"

    @classmethod
    def VALIDATE_INPUTS(cls, value: int) -> bool | str:
        return True if value % 2 == 0 else f"value {value} must be even"

    def run(self, value: int) -> tuple[int]:
        return (value,)


NODE_CLASS_MAPPINGS: dict[str, type] = {
    cls.__name__: cls
    for cls in (
        StubInt,
        AddInt,
        Collect,
        Fail,
        LazySwitch,
        Gate,
        Range,
        Sum,
        Sleep,
        Steps,
        Repeat,
        SelfLoop,
        Always,
        Hidden,
        Counter,
        Validated,
    )
}
