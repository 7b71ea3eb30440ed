"""Sample ECS documents for the log store tests: two jobs of one workflow, with a failure, a
cached node, node inputs of several JSON types, and two processes (service contexts)."""

from __future__ import annotations

from typing import Any

from flowscope.logstore.dates import parse_timestamp

WORKFLOW = "wf-8a2f1e9b"
JOB_A = "5b3f0c1e-0000-4000-8000-00000000000a"
JOB_B = "5b3f0c1e-0000-4000-8000-00000000000b"
DAY = "2026-11-23"
NOW_NS = parse_timestamp("2026-11-25T00:00:00Z")


def doc(event_id: str, second: float, action: str, **fields: Any) -> dict[str, Any]:
    whole = int(second)
    micros = round((second - whole) * 1e6)
    document: dict[str, Any] = {
        "@timestamp": f"{DAY}T09:30:{whole:02d}.{micros:06d}Z",
        "log.level": "info",
        "message": action.replace(".", " "),
        "event.action": action,
        "event.id": event_id,
        "service.name": "flowscope",
        "host.name": "gpu-1",
    }
    document.update(fields)
    return document


def sample_documents() -> list[dict[str, Any]]:
    a = {"job.id": JOB_A, "workflow.id": WORKFLOW, "user.id": "alice", "trace.id": "a" * 32}
    b = {"job.id": JOB_B, "workflow.id": WORKFLOW, "user.id": "bob", "trace.id": "b" * 32}
    ran = {"event.outcome": "success", "node.cached": False}
    return [
        doc("a1", 0, "job.started", **a, **{"event.sequence": 1, "job.nodes_total": 3}),
        doc(
            "a2",
            0.1,
            "node.started",
            **a,
            **{"event.sequence": 2, "node.id": "1", "node.type": "CheckpointLoaderSimple"},
        ),
        doc(
            "a3",
            1.1,
            "node.succeeded",
            **a,
            **ran,
            **{
                "event.sequence": 3,
                "node.id": "1",
                "node.type": "CheckpointLoaderSimple",
                "event.duration": 1_000_000_000,
                "node.duration_ms": 1000.0,
                "node.inputs": {"ckpt_name": "sd15.safetensors"},
            },
        ),
        doc(
            "a4",
            1.2,
            "node.started",
            **a,
            **{
                "event.sequence": 4,
                "node.id": "3",
                "node.type": "KSampler",
                "node.title": "Sampler (hi-res pass)",
            },
        ),
        doc(
            "a5",
            3.2,
            "node.succeeded",
            **a,
            **ran,
            **{
                "event.sequence": 5,
                "node.id": "3",
                "node.type": "KSampler",
                "node.title": "Sampler (hi-res pass)",
                "event.duration": 2_000_000_000,
                "node.duration_ms": 2000.0,
                "node.inputs": {
                    "seed": 42,
                    "steps": 20,
                    "sampler_name": "euler",
                    "denoise": 1.0,
                    "add_noise": True,
                },
            },
        ),
        doc(
            "a6",
            3.3,
            "node.started",
            **a,
            **{"event.sequence": 6, "node.id": "8", "node.type": "VAEDecode"},
        ),
        doc(
            "a7",
            3.8,
            "node.failed",
            **a,
            **{
                "log.level": "error",
                "event.outcome": "failure",
                "event.sequence": 7,
                "node.id": "8",
                "node.type": "VAEDecode",
                "event.duration": 500_000_000,
                "node.duration_ms": 500.0,
                "node.cached": False,
                "error.type": "torch.OutOfMemoryError",
                "error.code": "out_of_memory",
                "error.message": "CUDA out of memory. Tried to allocate 2.00 GiB",
                "error.stack_trace": "Traceback (most recent call last):\n  in VAEDecode.decode",
            },
        ),
        doc(
            "a8",
            3.9,
            "job.failed",
            **a,
            **{
                "log.level": "error",
                "event.outcome": "failure",
                "event.sequence": 8,
                "event.duration": 3_900_000_000,
                "error.type": "torch.OutOfMemoryError",
                "error.message": "CUDA out of memory. Tried to allocate 2.00 GiB",
                "node.id": "8",
                "node.type": "VAEDecode",
            },
        ),
        doc(
            "b1",
            10,
            "job.started",
            **b,
            **{"event.sequence": 1, "service.name": "worker", "host.name": "gpu-2"},
        ),
        doc(
            "b2",
            10.1,
            "node.cached",
            **b,
            **{
                "event.sequence": 2,
                "node.id": "1",
                "node.type": "CheckpointLoaderSimple",
                "node.cached": True,
                "event.outcome": "success",
                "service.name": "worker",
                "host.name": "gpu-2",
            },
        ),
        doc(
            "b3",
            10.2,
            "node.started",
            **b,
            **{
                "event.sequence": 3,
                "node.id": "3",
                "node.type": "KSampler",
                "service.name": "worker",
                "host.name": "gpu-2",
            },
        ),
        doc(
            "b4",
            11.7,
            "node.succeeded",
            **b,
            **ran,
            **{
                "event.sequence": 4,
                "node.id": "3",
                "node.type": "KSampler",
                "event.duration": 1_500_000_000,
                "node.duration_ms": 1500.0,
                "node.inputs": {
                    "seed": "42",
                    "steps": 30,
                    "sampler_name": "dpmpp_2m",
                    "add_noise": False,
                    "note": "100% cotton_candy",
                },
                "service.name": "worker",
                "host.name": "gpu-2",
            },
        ),
        doc(
            "b5",
            11.8,
            "job.succeeded",
            **b,
            **{
                "event.outcome": "success",
                "event.sequence": 5,
                "event.duration": 1_800_000_000,
                "service.name": "worker",
                "host.name": "gpu-2",
            },
        ),
        doc("w1", 20, "worker.started", **{"message": "worker started", "log.level": "info"}),
    ]
