"""Executing validated graphs: scheduling, caching, lazy inputs, lists, expansion, async nodes,
interrupt and progress. The engine emits events; it knows nothing of HTTP, SQL or sinks."""

from flowscope.engine.cache import (
    ClassicCache,
    LRUCache,
    NoCache,
    OutputCache,
    RamPressureCache,
    cache_from_spec,
)
from flowscope.engine.dynprompt import DynamicPrompt
from flowscope.engine.executor import Executor
from flowscope.engine.job import JobRequest, JobResult, NodeRecord

__all__ = [
    "ClassicCache",
    "DynamicPrompt",
    "Executor",
    "JobRequest",
    "JobResult",
    "LRUCache",
    "NoCache",
    "NodeRecord",
    "OutputCache",
    "RamPressureCache",
    "cache_from_spec",
]
