"""`flowscope logs`, `logs import`, `stats nodes` and `trace` over a real store in a temporary
data directory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from flowscope.cli import main
from flowscope.cli.logs import waterfall_bar
from flowscope.logstore import NodeSpan

JOB = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
OTHER = "7c9e6679-0000-40de-944b-e07fc1f90ae7"


def event(seq: int, ms: int, action: str, job: str = JOB, **fields: Any) -> dict[str, Any]:
    return {
        "@timestamp": f"2026-11-23T09:30:{ms // 1000:02d}.{ms % 1000:03d}000Z",
        "log.level": "error" if action.endswith("failed") else "info",
        "message": action.replace(".", " "),
        "event.action": action,
        "event.id": f"{job[9:13]}-{seq}",
        "event.sequence": seq,
        "job.id": job,
        "workflow.id": "wf-8a2f1e9b",
        **fields,
    }


def node_events(
    seq: int, start: int, node_id: str, node_type: str, ms: int
) -> list[dict[str, Any]]:
    node = {"node.id": node_id, "node.type": node_type}
    return [
        event(seq, start, "node.started", **node),
        event(
            seq + 1,
            start + ms,
            "node.succeeded",
            **node,
            **{
                "event.duration": ms * 1_000_000,
                "node.duration_ms": float(ms),
                "node.cached": False,
            },
        ),
    ]


def documents() -> list[dict[str, Any]]:
    oom = {
        "error.type": "torch.OutOfMemoryError",
        "error.message": "CUDA out of memory. Tried to allocate 2.00 GiB",
    }
    return [
        event(1, 0, "job.started"),
        event(
            2,
            10,
            "node.cached",
            **{"node.id": "4", "node.type": "CheckpointLoaderSimple", "node.cached": True},
        ),
        *node_events(3, 20, "6", "CLIPTextEncode", 100),
        *node_events(5, 130, "3", "KSampler", 800),
        event(7, 940, "node.started", **{"node.id": "8", "node.type": "VAEDecode"}),
        event(
            8,
            1040,
            "node.failed",
            **{"node.id": "8", "node.type": "VAEDecode", "event.duration": 100_000_000, **oom},
        ),
        event(9, 1050, "job.failed", **{"event.duration": 1_050_000_000, **oom}),
        event(1, 2000, "job.started", job=OTHER),
    ]


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def base(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    lines = [json.dumps(d) for d in documents()]
    (tmp_path / "events.jsonl").write_text("\n".join([*lines, "oops"]) + "\n")
    code, out, err = run_cli(
        capsys, "logs", "import", str(tmp_path / "events.jsonl"), "--base-directory", str(tmp_path)
    )
    assert code == 0, err
    assert "10 events imported" in out
    assert "1 bad lines skipped" in out
    assert "events.jsonl:11: not JSON" in err
    return str(tmp_path)


def test_import_twice_skips_duplicates(base: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(
        capsys, "logs", "import", f"{base}/events.jsonl", "--base-directory", base, "--json"
    )
    assert code == 0
    report = json.loads(out)
    assert (report["inserted"], report["duplicates"], report["bad"]) == (0, 10, 1)
    assert report["bad_lines"] == [
        {
            "path": f"{base}/events.jsonl",
            "line": 11,
            "reason": "not JSON (Expecting value at column 1)",
        }
    ]


def test_seed_query_as_typed(base: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(
        capsys, "logs", "workflow_id:wf-8a2f1e9b AND level:ERROR", "--base-directory", base
    )
    assert code == 0, err
    assert "2 events, newest first" in out
    assert "job.failed" in out and "node.failed" in out
    assert "#8 VAEDecode" in out
    assert "torch.OutOfMemoryError: CUDA out of memory" in out
    assert "node.succeeded" not in out


def test_json_lines_limit_and_order(base: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(
        capsys,
        "logs",
        "node:*",
        "--json",
        "--limit",
        "3",
        "--oldest-first",
        "--base-directory",
        base,
    )
    assert code == 0
    found = [json.loads(line) for line in out.splitlines()]
    assert [d["event.sequence"] for d in found] == [2, 3, 4]
    code, out, _ = run_cli(capsys, "logs", '"out of memory"', "--json", "--base-directory", base)
    assert [json.loads(line)["event.action"] for line in out.splitlines()] == [
        "job.failed",
        "node.failed",
    ]


def test_time_window(base: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(
        capsys,
        "logs",
        "--since",
        "2026-11-23T09:30:01",
        "--until",
        "2026-11-23T09:30:02",
        "--json",
        "--base-directory",
        base,
    )
    assert code == 0
    assert [json.loads(line)["event.sequence"] for line in out.splitlines()] == [9, 8]
    code, out, _ = run_cli(capsys, "logs", "--since", "1d", "--base-directory", base)
    assert code == 0
    assert "0 events" in out


def test_errors(base: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(
        capsys, "logs", "level:error and (node:KSampler", "--base-directory", base
    )
    assert code == 2
    assert "missing ')' to close the '(' at position 16" in err
    assert "\n  level:error and (node:KSampler\n" in err
    assert err.rstrip("\n").endswith(" " * (2 + 30) + "^")

    code, _, err = run_cli(capsys, "logs", "--since", "yesterday", "--base-directory", base)
    assert code == 2
    assert "'yesterday' is neither a look-back" in err

    code, _, err = run_cli(capsys, "logs", "level:error", "node:x", "--base-directory", base)
    assert code == 2
    assert "quote the whole query" in err

    empty = tmp_path / "empty"
    for argv in (["logs"], ["stats", "nodes"], ["trace", JOB]):
        code, _, err = run_cli(capsys, *argv, "--base-directory", str(empty))
        assert code == 1
        assert "no log store at" in err
        assert "flowscope logs import" in err
    assert not empty.exists()

    code, _, err = run_cli(capsys, "logs", "import", "--base-directory", base)
    assert code == 2
    code, _, err = run_cli(capsys, "logs", "import", f"{base}/nope.jsonl", "--base-directory", base)
    assert code == 1
    assert "no such file" in err


def test_stats_nodes(base: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "stats", "nodes", "--json", "--base-directory", base)
    assert code == 0
    stats = {s["node_type"]: s for s in json.loads(out)}
    assert list(stats) == ["KSampler", "CLIPTextEncode", "VAEDecode", "CheckpointLoaderSimple"]
    assert stats["KSampler"]["p95_ms"] == 800.0
    assert stats["VAEDecode"]["error_rate"] == 1.0
    assert stats["CheckpointLoaderSimple"]["cache_hit_rate"] == 1.0
    code, out, _ = run_cli(capsys, "stats", "nodes", "--base-directory", base)
    assert code == 0
    assert "KSampler" in out and "800.0" in out and "100.0%" in out
    code, out, _ = run_cli(capsys, "stats", "nodes", "--since", "1h", "--base-directory", base)
    assert "no node results in this window" in out


def test_trace_draws_the_waterfall(base: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "trace", JOB[:13], "--base-directory", base)
    assert code == 0, err
    assert f"job {JOB}  failed  1050.0 ms" in out
    assert "workflow wf-8a2f1e9b" in out
    rows = [line for line in out.splitlines() if line.startswith("#")]
    assert [row.split()[0] for row in rows[:4]] == ["#4", "#6", "#3", "#8"]
    assert "cached" in rows[0] and "◆" in rows[0]
    assert "█" in rows[2]
    assert "failed" in rows[3] and "✗" in rows[3]
    assert "#8 VAEDecode: torch.OutOfMemoryError: CUDA out of memory" in out
    # The KSampler bar starts after the CLIPTextEncode bar and is eight times longer.
    clip_bar = rows[1].split("│")[-1]
    sampler_bar = rows[2].split("│")[-1]
    assert sampler_bar.index("█") > clip_bar.index("█")
    assert sampler_bar.count("█") / clip_bar.count("█") == pytest.approx(8, rel=0.1)

    code, out, _ = run_cli(capsys, "trace", JOB, "--json", "--base-directory", base)
    timeline = json.loads(out)
    assert timeline["status"] == "failed"
    assert [s["node_id"] for s in timeline["spans"]] == ["4", "6", "3", "8"]


def test_trace_unknown_or_ambiguous_job(base: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "trace", "nope", "--base-directory", base)
    assert code == 1
    assert "no events of job 'nope'" in err
    code, _, err = run_cli(capsys, "trace", "7c9e6679", "--base-directory", base)
    assert code == 2
    assert "starts several job ids" in err


def test_waterfall_bar_geometry() -> None:
    def span(status: str, offset: int, duration: int) -> NodeSpan:
        return NodeSpan("1", "T", None, status, offset, duration)

    assert str(waterfall_bar(span("succeeded", 0, 50), 100, 20)) == "█" * 10
    assert str(waterfall_bar(span("succeeded", 50, 50), 100, 20)) == " " * 10 + "█" * 10
    assert str(waterfall_bar(span("succeeded", 99, 0), 100, 20)) == " " * 19 + "█"
    assert str(waterfall_bar(span("failed", 0, 20), 100, 20)) == "███✗"
    assert str(waterfall_bar(span("cached", 25, 0), 100, 20)) == " " * 5 + "◆"
