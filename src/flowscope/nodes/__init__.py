"""The node protocol, the registry, custom node pack loading and the built-in node packs."""

from flowscope.nodes.blocker import ExecutionBlocker
from flowscope.nodes.progress import ExecutionInterrupted, ProgressBar, check_interrupted
from flowscope.nodes.registry import NodeRegistry, RegisteredNode

__all__ = [
    "ExecutionBlocker",
    "ExecutionInterrupted",
    "NodeRegistry",
    "ProgressBar",
    "RegisteredNode",
    "check_interrupted",
]
