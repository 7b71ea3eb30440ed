"""A small node pack for engine tests: every protocol feature, no tensors needed."""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Callable
from typing import Any

import torch

from flowscope.nodes import ExecutionBlocker, ProgressBar, check_interrupted
from flowscope.nodes.graph_builder import GraphBuilder

CALLS: list[tuple[str, Any]] = []  # (class_type, argument) per FUNCTION call, for assertions
# Test code hooked into running nodes, by name (the Hook node calls HOOKS[name](value)).
HOOKS: dict[str, Callable[[Any], None]] = {}
# What Fingerprinted.IS_CHANGED returns per name (a file's hash, say); set by tests.
FINGERPRINTS: dict[str, Any] = {}


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

    def fail(self, value: int, message: str = "boom") -> tuple[int]:
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


class Alternate:
    """OUTPUT_IS_LIST: True, False, True, ... (`count` items)."""

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"count": ("INT", {"default": 3, "min": 0})}}

    RETURN_TYPES = ("BOOLEAN",)
    OUTPUT_IS_LIST = (True,)
    FUNCTION = "make"

    def make(self, count: int) -> tuple[list[bool]]:
        return ([i % 2 == 0 for i in range(count)],)


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

    def run(
        self, prompt: Any, unique_id: str, extra_pnginfo: Any, dynprompt: Any
    ) -> dict[str, Any]:
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


class Hook:
    """Calls the test's HOOKS[name](value) while it runs (to interrupt from a thread, say)."""

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"value": ("*",), "name": ("STRING", {"default": "hook"})}}

    RETURN_TYPES = ("*",)
    FUNCTION = "run"

    def run(self, value: Any, name: str) -> tuple[Any]:
        CALLS.append(("Hook", value))
        hook = HOOKS.get(name)
        if hook is not None:
            hook(value)
        return (value,)


class HookOutput:
    """An output node that calls HOOKS[name](value): the hook runs in the job's last node."""

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"value": ("*",), "name": ("STRING", {"default": "hook"})}}

    RETURN_TYPES = ()
    OUTPUT_NODE = True
    FUNCTION = "run"

    def run(self, value: Any, name: str) -> dict[str, Any]:
        hook = HOOKS.get(name)
        if hook is not None:
            hook(value)
        return {"ui": {"value": [value]}}


class Raise:
    """Fails with the exception `kind` names: a plain error or the two kinds of out-of-memory."""

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "value": ("*",),
                "kind": (["value", "torch_oom", "cpu_oom"],),
                "message": ("STRING", {"default": "boom"}),
            }
        }

    RETURN_TYPES = ("*",)
    FUNCTION = "run"

    def run(self, value: Any, kind: str = "value", message: str = "boom") -> tuple[Any]:
        if kind == "torch_oom":
            raise torch.OutOfMemoryError(f"CUDA out of memory. {message}")
        if kind == "cpu_oom":
            raise RuntimeError(
                "[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate "
                f"memory: you tried to allocate 1099511627776 bytes. {message}"
            )
        raise ValueError(message)


class MakeImage:
    """A real IMAGE tensor ([B,H,W,C]) of ones."""

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"size": ("INT", {"default": 64})}}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "make"

    def make(self, size: int) -> tuple[torch.Tensor]:
        return (torch.ones(1, size, size, 3),)


class Allocate:
    """Touches `megabytes` of fresh memory for a few milliseconds."""

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"value": ("*",), "megabytes": ("INT", {"default": 200})}}

    RETURN_TYPES = ("*",)
    FUNCTION = "run"

    def run(self, value: Any, megabytes: int) -> tuple[Any]:
        block = torch.ones(megabytes * 1024 * 1024 // 4)
        time.sleep(0.005)
        del block
        return (value,)


class PreviewSteps:
    """Progress with a preview on every step."""

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"steps": ("INT", {"default": 3})}}

    RETURN_TYPES = ("INT",)
    FUNCTION = "run"

    def run(self, steps: int) -> tuple[int]:
        bar = ProgressBar(steps)
        for step in range(1, steps + 1):
            bar.update_absolute(step, steps, ("JPEG", f"preview {step}", 512))
        return (steps,)


class PicturePreview:
    """Progress with a real image preview (a PIL image, ComfyUI's previewer tuple) per step."""

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"steps": ("INT", {"default": 2}), "size": ("INT", {"default": 16})}}

    RETURN_TYPES = ("INT",)
    FUNCTION = "run"

    def run(self, steps: int, size: int) -> tuple[int]:
        from PIL import Image

        bar = ProgressBar(steps)
        for step in range(1, steps + 1):
            image = Image.new("RGB", (size, size), (step * 40 % 256, 0, 0))
            bar.update_absolute(step, steps, ("PNG", image, 512))
        return (steps,)


class UntilInterrupted:
    """Reports progress every millisecond until interrupted (gives up after `seconds`)."""

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"seconds": ("FLOAT", {"default": 10.0})}}

    RETURN_TYPES = ("INT",)
    FUNCTION = "run"

    def run(self, seconds: float) -> tuple[int]:
        started = HOOKS.get("started")
        if started is not None:
            started(None)
        bar = ProgressBar(0)
        deadline = time.monotonic() + seconds
        steps = 0
        while time.monotonic() < deadline:
            steps += 1
            bar.update_absolute(steps, 0)
            time.sleep(0.001)
        return (steps,)


class LazyAsk:
    """Lazy inputs `a` and `b`; check_lazy_status asks for the names listed in `ask`."""

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {"ask": ("STRING", {"default": "a"})},
            "optional": {"a": ("*", {"lazy": True}), "b": ("*", {"lazy": True})},
        }

    RETURN_TYPES = ("*", "*")
    FUNCTION = "run"

    def check_lazy_status(self, ask: str, a: Any = None, b: Any = None) -> list[str]:
        CALLS.append(("LazyAsk.check", (a, b)))
        return [name for name in ask.split(",") if name]

    def run(self, ask: str, a: Any = None, b: Any = None) -> tuple[Any, Any]:
        CALLS.append(("LazyAsk", (a, b)))
        return (a, b)


class AsyncLazy:
    """An async check_lazy_status that asks for `a` only when `want_a`."""

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"want_a": ("BOOLEAN", {"default": True}), "a": ("*", {"lazy": True})}}

    RETURN_TYPES = ("*",)
    FUNCTION = "run"

    async def check_lazy_status(self, want_a: bool, a: Any = None) -> list[str]:
        await asyncio.sleep(0.01)
        return ["a"] if want_a else []

    def run(self, want_a: bool, a: Any = None) -> tuple[Any]:
        return (a,)


class ExpandWithOutput:
    """Expands into AddInt(value, 1) -> Collect (an output node inside the expansion)."""

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"value": ("INT",)}}

    RETURN_TYPES = ("INT",)
    FUNCTION = "expand"

    def expand(self, value: int) -> dict[str, Any]:
        graph = GraphBuilder()
        add = graph.node("AddInt", a=value, b=1)
        graph.node("Collect", value=add.out(0))
        return {"result": (add.out(0),), "expand": graph.finalize()}


class ExpandInto:
    """Expands into one `class_type` node fed `value` (as its input `input_name`), and returns
    that node's first output."""

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "value": ("*",),
                "class_type": ("STRING", {"default": "AddInt"}),
                "input_name": ("STRING", {"default": "value"}),
            }
        }

    RETURN_TYPES = ("*",)
    FUNCTION = "expand"

    def expand(self, value: Any, class_type: str, input_name: str) -> dict[str, Any]:
        graph = GraphBuilder()
        node = graph.node(class_type, **{input_name: value})
        return {"result": (node.out(0),), "expand": graph.finalize()}


class ExpandWithId:
    """Expands into a node with a fixed id (no GraphBuilder prefix): duplicates are possible."""

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"value": ("INT",), "node_id": ("STRING", {"default": "1"})}}

    RETURN_TYPES = ("INT",)
    FUNCTION = "expand"

    def expand(self, value: int, node_id: str) -> dict[str, Any]:
        graph = GraphBuilder(prefix="")
        node = graph.node("AddInt", id=node_id, a=value, b=1)
        return {"result": (node.out(0),), "expand": graph.finalize()}


class ChangedRaises:
    """IS_CHANGED raises: treated as "changed" every time."""

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"value": ("INT",)}}

    RETURN_TYPES = ("INT",)
    FUNCTION = "run"

    @classmethod
    def IS_CHANGED(cls, value: int) -> str:
        raise OSError("cannot stat the file")

    def run(self, value: int) -> tuple[int]:
        CALLS.append(("ChangedRaises", value))
        return (value,)


class Fingerprinted:
    """IS_CHANGED returns the `version` the test sets in FINGERPRINTS (a file hash, say)."""

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"name": ("STRING", {"default": "a"})}}

    RETURN_TYPES = ("STRING",)
    FUNCTION = "run"

    @classmethod
    def IS_CHANGED(cls, name: str) -> Any:
        return FINGERPRINTS.get(name, "")

    def run(self, name: str) -> tuple[str]:
        CALLS.append(("Fingerprinted", name))
        return (f"{name}@{FINGERPRINTS.get(name, '')}",)


class UniqueEcho:
    """Has a UNIQUE_ID hidden input, so it is keyed by node id like NOT_IDEMPOTENT nodes."""

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"value": ("INT",)}, "hidden": {"unique_id": "UNIQUE_ID"}}

    RETURN_TYPES = ("INT",)
    FUNCTION = "run"

    def run(self, value: int, unique_id: str) -> tuple[int]:
        CALLS.append(("UniqueEcho", unique_id))
        return (value,)


class Tracked:
    """A result object whose lifetime the tests watch through TRACKED."""


TRACKED: weakref.WeakSet[Tracked] = weakref.WeakSet()


class Track:
    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"value": ("INT",)}}

    RETURN_TYPES = ("TRACKED",)
    FUNCTION = "run"

    def run(self, value: int) -> tuple[Tracked]:
        item = Tracked()
        TRACKED.add(item)
        return (item,)


class Describe:
    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"value": ("*",)}}

    RETURN_TYPES = ("STRING",)
    FUNCTION = "run"

    def run(self, value: Any) -> tuple[str]:
        return (type(value).__name__,)


class CountAlive:
    """An output node that reports how many Tracked results are still alive."""

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"value": ("*",)}}

    RETURN_TYPES = ()
    OUTPUT_NODE = True
    FUNCTION = "run"

    def run(self, value: Any) -> dict[str, Any]:
        return {"ui": {"alive": [len(TRACKED)]}}


class Prompted:
    """Constants of every kind, for the node.inputs preview."""

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "text": ("STRING", {"multiline": True}),
                "seed": ("INT", {"default": 0}),
                "api_key": ("STRING", {"default": ""}),
                "auth_token": ("STRING", {"default": ""}),
                "user_password": ("STRING", {"default": ""}),
                "secret_sauce": ("STRING", {"default": ""}),
            },
            "optional": {"image": ("IMAGE",)},
        }

    RETURN_TYPES = ("STRING", "IMAGE")
    FUNCTION = "run"

    def run(self, text: str, seed: int, image: Any = None, **secrets: str) -> tuple[str, Any]:
        return (text, image if image is not None else torch.zeros(2, 8, 8, 3))


class Pair:
    """Two outputs: a list output (OUTPUT_IS_LIST) and a plain one."""

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"value": ("INT",)}}

    RETURN_TYPES = ("INT", "INT")
    OUTPUT_IS_LIST = (True, False)
    FUNCTION = "run"

    def run(self, value: int) -> tuple[list[int], int]:
        return ([value, value * 10], value)


class Reverse:
    """INPUT_IS_LIST and OUTPUT_IS_LIST: the whole list in, the reversed list out."""

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"values": ("INT",)}}

    RETURN_TYPES = ("INT",)
    INPUT_IS_LIST = True
    OUTPUT_IS_LIST = (True,)
    FUNCTION = "run"

    def run(self, values: list[int]) -> tuple[list[int]]:
        CALLS.append(("Reverse", list(values)))
        return (list(reversed(values)),)


class BlockSelf:
    """Returns a bare ExecutionBlocker (not a tuple): all its outputs are blocked."""

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"value": ("*",)}}

    RETURN_TYPES = ("*", "*")
    FUNCTION = "run"

    def run(self, value: Any) -> ExecutionBlocker:
        return ExecutionBlocker(None)


class BadReturn:
    """Returns a bare value instead of a tuple: a node bug the engine must report clearly."""

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"value": ("INT",)}}

    RETURN_TYPES = ("INT",)
    FUNCTION = "run"

    def run(self, value: int) -> int:
        return value


class AsyncFail:
    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"value": ("*",)}}

    RETURN_TYPES = ("*",)
    FUNCTION = "run"

    async def run(self, value: Any) -> tuple[Any]:
        await asyncio.sleep(0.01)
        raise ValueError("async boom")


class AsyncCheck:
    """An async node that checks for interrupt between awaits."""

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"value": ("*",)}}

    RETURN_TYPES = ("*",)
    FUNCTION = "run"

    async def run(self, value: Any) -> tuple[Any]:
        for _ in range(1000):
            await asyncio.sleep(0.001)
            check_interrupted()
        return (value,)


NODE_CLASS_MAPPINGS: dict[str, type] = {
    cls.__name__: cls
    for cls in (
        StubInt,
        PicturePreview,
        AddInt,
        Collect,
        Fail,
        LazySwitch,
        Gate,
        Range,
        Alternate,
        Sum,
        Sleep,
        Steps,
        Repeat,
        SelfLoop,
        Always,
        Hidden,
        Counter,
        Validated,
        Hook,
        HookOutput,
        Raise,
        MakeImage,
        Allocate,
        PreviewSteps,
        UntilInterrupted,
        LazyAsk,
        AsyncLazy,
        ExpandWithOutput,
        ExpandInto,
        ExpandWithId,
        ChangedRaises,
        Fingerprinted,
        UniqueEcho,
        Track,
        Describe,
        CountAlive,
        Prompted,
        Pair,
        Reverse,
        BlockSelf,
        BadReturn,
        AsyncFail,
        AsyncCheck,
    )
}
