"""Rotation by the process itself: rename + reopen by size and by time, `keep` files, recovery
after write errors, and a tail follower (Fluentd in_tail style) that loses and repeats nothing."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest
from telemetry_tail_follower import TailFollower

from flowscope.telemetry import Action, Event, EventBus, Level
from flowscope.telemetry.pipeline import TelemetryPipeline
from flowscope.telemetry.sinks.jsonlines import JsonLinesSink
from flowscope.telemetry.sinks.rotation import RotatingFile


def numbered_lines(start: int, count: int, width: int = 20) -> list[bytes]:
    return [f"{i:0{width - 1}d}\n".encode() for i in range(start, start + count)]


def read_all(path: Path, keep: int) -> list[bytes]:
    """Every line, oldest file first: path.keep … path.1, path."""
    lines: list[bytes] = []
    for index in range(keep, 0, -1):
        rotated = path.with_name(f"{path.name}.{index}")
        if rotated.exists():
            lines.extend(rotated.read_bytes().splitlines(keepends=True))
    lines.extend(path.read_bytes().splitlines(keepends=True))
    return lines


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_size_rotation_renames_shifts_and_keeps_n_files(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    log = RotatingFile(path, max_bytes=100, keep=3)  # 5 lines of 20 bytes per file
    lines = numbered_lines(0, 42)
    for i in range(0, 42, 4):
        log.write_lines(lines[i : i + 4])
    log.close()

    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "events.jsonl",
        "events.jsonl.1",
        "events.jsonl.2",
        "events.jsonl.3",
    ]
    assert log.rotations == 8
    for name in ("events.jsonl.1", "events.jsonl.2", "events.jsonl.3"):
        assert (tmp_path / name).stat().st_size == 100
    # Oldest beyond keep are gone; what is kept is contiguous and in order, never split.
    assert read_all(path, keep=3) == lines[42 - 17 :]


def test_rotation_is_a_rename_never_a_copy(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    log = RotatingFile(path, max_bytes=1000, keep=2)
    log.write_lines(numbered_lines(0, 3))
    inode = path.stat().st_ino
    log.rotate()
    log.write_lines(numbered_lines(3, 1))
    log.close()

    # A follower holding the old inode finds all of it under the new name (not truncated).
    assert (tmp_path / "events.jsonl.1").stat().st_ino == inode
    assert (tmp_path / "events.jsonl.1").read_bytes() == b"".join(numbered_lines(0, 3))
    assert path.stat().st_ino != inode
    assert path.read_bytes() == b"".join(numbered_lines(3, 1))


def test_keep_zero_keeps_only_the_current_file(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    log = RotatingFile(path, max_bytes=40, keep=0)
    log.write_lines(numbered_lines(0, 5))
    log.close()
    assert [p.name for p in tmp_path.iterdir()] == ["events.jsonl"]
    assert path.read_bytes() == b"".join(numbered_lines(4, 1))


def test_a_line_longer_than_max_bytes_gets_a_file_of_its_own(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    log = RotatingFile(path, max_bytes=50, keep=5)
    big = b"x" * 120 + b"\n"
    log.write_lines([b"a\n", big, b"b\n"])
    log.close()
    assert (tmp_path / "events.jsonl.2").read_bytes() == b"a\n"
    assert (tmp_path / "events.jsonl.1").read_bytes() == big
    assert path.read_bytes() == b"b\n"


def test_time_rotation_at_period_boundaries(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    day = 86_400.0
    clock = FakeClock(100 * day + 3_600)
    log = RotatingFile(path, max_bytes=None, rotate_every_s=day, keep=5, clock=clock)
    log.write_lines([b"day 100 morning\n"])
    clock.now = 100 * day + 80_000
    log.write_lines([b"day 100 evening\n"])
    clock.now = 101 * day  # midnight UTC: a new period
    log.write_lines([b"day 101\n"])
    clock.now = 103 * day + 5  # nothing written on day 102: no empty file for it
    log.write_lines([b"day 103\n"])
    log.close()

    assert (tmp_path / "events.jsonl.2").read_bytes() == b"day 100 morning\nday 100 evening\n"
    assert (tmp_path / "events.jsonl.1").read_bytes() == b"day 101\n"
    assert path.read_bytes() == b"day 103\n"
    assert not (tmp_path / "events.jsonl.3").exists()


def test_a_file_from_an_earlier_period_is_rotated_on_the_first_write(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"written yesterday\n")
    two_days_ago = time.time() - 2 * 86_400
    os.utime(path, (two_days_ago, two_days_ago))

    log = RotatingFile(path, rotate_every_s=86_400, keep=3)
    log.write_lines([b"today\n"])
    log.close()
    assert (tmp_path / "events.jsonl.1").read_bytes() == b"written yesterday\n"
    assert path.read_bytes() == b"today\n"


def test_reopening_appends_and_ends_a_cut_line(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "deep" / "events.jsonl"
    path.parent.mkdir(parents=True)
    path.write_bytes(b'{"complete":1}\n{"cut in the mid')  # a crash mid-write
    log = RotatingFile(path, max_bytes=10_000)
    log.write_lines([b'{"next":2}\n'])
    log.close()
    assert path.read_bytes().splitlines() == [b'{"complete":1}', b'{"cut in the mid', b'{"next":2}']


def test_a_failed_write_raises_then_the_file_recovers(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.symlink_to("/dev/full")  # every write fails with ENOSPC, as on a full disk
    log = RotatingFile(path, max_bytes=10_000)
    with pytest.raises(OSError) as failure:
        log.write_lines([b"lost\n"])
    assert "No space left" in str(failure.value)

    path.unlink()  # the disk has room again
    log.write_lines([b"kept\n"])
    log.close()
    assert path.read_bytes() == b"kept\n"


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"max_bytes": 0}, "max_bytes"),
        ({"rotate_every_s": 0}, "rotate_every_s"),
        ({"keep": -1}, "keep"),
    ],
)
def test_bad_settings_name_the_setting(
    tmp_path: Path, options: dict[str, float], problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        RotatingFile(tmp_path / "events.jsonl", **options)  # type: ignore[arg-type]


def test_sink_rotates_by_time(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    sink = JsonLinesSink(path, rotate_every_s=0.3, flush_interval_s=0.01)
    bus = EventBus()
    pipeline = TelemetryPipeline(bus, [sink])
    bus.emit(Event(Action.WORKER_STARTED, "before", time.time_ns()))
    assert sink.wait_idle()
    time.sleep(0.35)  # past the next 0.3 s boundary
    bus.emit(Event(Action.WORKER_STOPPED, "after", time.time_ns()))
    pipeline.close()

    assert sink.rotations == 1
    before = json.loads((tmp_path / "events.jsonl.1").read_text())
    after = json.loads(path.read_text())
    assert (before["message"], after["message"]) == ("before", "after")


@pytest.mark.slow
def test_tail_follower_loses_and_repeats_nothing_across_rotations(tmp_path: Path) -> None:
    """100,000 events through the real pipeline into a sink rotating every ~1 MB, while a
    follower reads concurrently by inode + offset, as Fluentd's in_tail does."""
    total = 100_000
    keep = 100  # large enough that nothing is rotated away before the follower reads it
    path = tmp_path / "logs" / "events.jsonl"
    sink = JsonLinesSink(
        path,
        service=None,
        max_bytes=1_000_000,
        keep=keep,
        capacity=total,
        batch_size=500,
        flush_interval_s=0.005,
    )
    bus = EventBus()
    pipeline = TelemetryPipeline(bus, [sink])

    follower = TailFollower(path, keep=keep)
    seen: list[bytes] = []
    done = threading.Event()

    def follow() -> None:
        while not done.is_set():
            seen.extend(follower.poll())
            time.sleep(0.002)
        seen.extend(follower.poll())

    reader = threading.Thread(target=follow)
    reader.start()
    try:
        for i in range(total):
            bus.emit(
                Event(
                    Action.NODE_SUCCEEDED,
                    "node succeeded",
                    time.time_ns(),
                    Level.INFO,
                    {"job.id": "job-1", "event.sequence": i, "node.id": str(i % 50)},
                )
            )
            if i % 2_000 == 0:
                time.sleep(0.001)  # let the writer and the follower interleave with the emitter
        pipeline.close(timeout_s=30)
    finally:
        done.set()
        reader.join(30)
        follower.close()

    assert sink.dropped == 0
    assert sink.rotations >= 5
    assert follower.files_followed == sink.rotations + 1
    documents = [json.loads(line) for line in seen]
    ids = [document["event.id"] for document in documents]
    assert len(ids) == total  # nothing lost ...
    assert len(set(ids)) == total  # ... nothing read twice
    assert [document["event.sequence"] for document in documents] == list(range(total))
