"""Real flowscope documents for the deploy tests: small jobs run by the real engine, through the
real telemetry pipeline, written by the real JSON-lines sink under `<base>/logs/`, rotated so
that the rotated names exist too. The jobs cover every kind of event the engine writes today."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import testing_nodes

from flowscope.engine import Executor, JobRequest
from flowscope.engine.memory import MemoryProbe
from flowscope.graph.validation import validate_prompt
from flowscope.nodes import NodeRegistry
from flowscope.telemetry import EventBus
from flowscope.telemetry.document import ServiceInfo
from flowscope.telemetry.pipeline import DebugSampler, TelemetryPipeline
from flowscope.telemetry.setup import DEFAULT_LOG_FILE
from flowscope.telemetry.sinks.jsonlines import JsonLinesSink

# Where flowscope writes its JSON lines, relative to the base directory; the collectors' tail
# paths must point here.
LOG_FILE = DEFAULT_LOG_FILE
ENVIRONMENT = "prod"


class DeployConstant:
    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "seed": ("INT", {"default": 0}),
                "cfg": ("FLOAT", {"default": 7.5}),
                "sampler_name": ("STRING", {"default": "euler"}),
                "prompt": ("STRING", {"default": ""}),
                "api_key": ("STRING", {"default": ""}),
            }
        }

    RETURN_TYPES = ("INT",)
    FUNCTION = "run"

    def run(self, seed: int, cfg: float, sampler_name: str, prompt: str, api_key: str) -> Any:
        return (seed,)


# The rest of the job is the shared test node pack (tests/support/testing_nodes.py).
NODE_CLASS_MAPPINGS: dict[str, type] = {
    "DeployConstant": DeployConstant,
    **{
        name: testing_nodes.NODE_CLASS_MAPPINGS[name]
        for name in ("AddInt", "Steps", "Repeat", "Gate", "Fail", "Collect")
    },
}

_CONSTANT = {
    "class_type": "DeployConstant",
    "inputs": {
        "seed": 42,
        "cfg": 7.5,
        "sampler_name": "euler",
        "prompt": "a lighthouse at dusk, " * 20,  # cut to 200 characters in node.inputs
        "api_key": "sk-not-a-real-key",  # dropped from node.inputs
    },
}
SUCCEEDING_JOB = {
    "1": _CONSTANT,
    "2": {
        "class_type": "Steps",  # node.progress events
        "inputs": {"steps": 4, "delay": 0.0},
        "_meta": {"title": "Sampler (hi-res pass)"},
    },
    "3": {"class_type": "Repeat", "inputs": {"value": ["2", 0], "times": 2}},  # node.expanded
    "4": {"class_type": "Collect", "inputs": {"value": ["3", 0]}},
    "5": {  # blocks what consumes it, with a message: node.blocked at warn level
        "class_type": "Gate",
        "inputs": {"value": ["1", 0], "open": False, "message": "gate closed"},
    },
    "6": {"class_type": "Collect", "inputs": {"value": ["5", 0]}},
}
FAILING_JOB = {
    "1": _CONSTANT,
    "2": {
        "class_type": "Fail",
        "inputs": {"value": ["1", 0], "message": "sampler diverged at seed 42"},
    },
    "3": {"class_type": "Collect", "inputs": {"value": ["2", 0]}},
}


@dataclass
class WrittenLog:
    base: Path
    files: list[Path]  # events.jsonl and its rotations, as the sink left them
    documents: list[dict[str, Any]]


def write_flowscope_log(base: Path) -> WrittenLog:
    """Run the jobs (the succeeding one twice, so the second run is served from the cache) and
    return what the JSON-lines sink wrote under `base`."""
    registry = NodeRegistry()
    registry.register_mappings(NODE_CLASS_MAPPINGS, python_module="tests.deploy", builtin=True)
    bus = EventBus()
    log_path = base / LOG_FILE
    service = ServiceInfo(environment=ENVIRONMENT, node_name="gpu-1", host_name="gpu-1")
    # Small files, so the run rotates; keep enough of them that no event is rotated away.
    events = JsonLinesSink(log_path, service=service, max_bytes=8_192, keep=100)
    # A sink that can hold one event and is slow to drain: it drops the rest, and the pipeline
    # reports that in a telemetry.dropped event.
    overflowing = JsonLinesSink(
        base / "overflow" / "dropped.jsonl", capacity=1, flush_interval_s=60, name="overflow"
    )
    # Keep every debug event, marked with the sampling rate (as a rate below 1 does).
    sampler = DebugSampler(0.5, draw=lambda: 0.0)
    pipeline = TelemetryPipeline(bus, [events, overflowing], sampler=sampler)
    executor = Executor(
        registry, bus=bus, memory_probe=MemoryProbe(min_duration_ns=0), progress_interval_s=0
    )
    try:
        for prompt in (SUCCEEDING_JOB, SUCCEEDING_JOB, FAILING_JOB):
            validation = validate_prompt(prompt, registry.schema)
            assert validation.ok, validation.error
            executor.execute(
                JobRequest(
                    prompt=validation.prompt,
                    outputs=validation.outputs,
                    workflow_id="wf-8a2f1e9b",
                    user_id="alice",
                )
            )
    finally:
        pipeline.close(timeout_s=10)
    files = sorted(log_path.parent.iterdir())
    documents = [
        json.loads(line) for path in files for line in path.read_text(encoding="utf-8").splitlines()
    ]
    return WrittenLog(base, files, documents)
