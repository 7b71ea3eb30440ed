"""The disk spool: chunks survive reopening in order and byte for byte, the size bound drops the
oldest and counts them, torn writes are discarded, and two live users of one directory are
refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowscope.telemetry.forward.protocol import EncodedChunk, encode_chunk, new_chunk_id
from flowscope.telemetry.forward.spool import Spool, SpoolInUseError


def chunk(size: int, events: int = 1) -> EncodedChunk:
    return EncodedChunk(new_chunk_id(), events, bytes([size % 251]) * size)


def test_chunks_come_back_in_order_after_reopening(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 10_000)
    written = [encode_chunk("t", [(i, {"n": i})], compress=i % 2 == 0) for i in range(5)]
    for item in written:
        assert spool.add(item) == []
    assert spool.remove(written[1].chunk_id) is not None
    assert spool.remove(written[1].chunk_id) is None  # a second ack for it is harmless
    spool.close()

    reopened = Spool(tmp_path, 10_000)
    kept = [written[i] for i in (0, 2, 3, 4)]
    assert [c.chunk_id for c in reopened.pending()] == [c.chunk_id for c in kept]
    assert [reopened.read(c) for c in reopened.pending()] == [c.frame for c in kept]
    assert reopened.size_bytes == sum(len(c.frame) for c in kept)
    later = chunk(10)
    reopened.add(later)  # numbering continues after the replayed chunks
    assert reopened.pending()[-1].chunk_id == later.chunk_id
    reopened.close()


def test_chunk_ids_with_slash_and_plus_survive_the_file_name(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 10_000)
    odd = EncodedChunk("ab+/cd+/ef==", 2, b"frame")
    spool.add(odd)
    spool.close()
    reopened = Spool(tmp_path, 10_000)
    (only,) = reopened.pending()
    assert (only.chunk_id, only.events, reopened.read(only)) == ("ab+/cd+/ef==", 2, b"frame")
    reopened.close()


def test_the_oldest_chunks_are_dropped_and_counted_over_the_bound(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 1000, fsync=False)
    first = [chunk(300, events=3) for _ in range(3)]
    for item in first:
        spool.add(item)
    newest = chunk(500, events=4)
    dropped = spool.add(newest)
    assert [c.chunk_id for c in dropped] == [first[0].chunk_id, first[1].chunk_id]
    assert (spool.dropped_chunks, spool.dropped_events) == (2, 6)
    assert spool.size_bytes == 800 <= spool.max_bytes
    assert sorted(p.name for p in tmp_path.glob("*.fwd")) == sorted(
        c.path.name for c in spool.pending()
    )
    huge = chunk(1001, events=7)
    assert spool.add(huge)[0].chunk_id == huge.chunk_id  # larger than the bound on its own
    assert spool.dropped_events == 13
    assert [c.chunk_id for c in spool.pending()] == [first[2].chunk_id, newest.chunk_id]
    spool.close()


def test_a_smaller_bound_at_start_drops_the_oldest(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 10_000)
    items = [chunk(100, events=5) for _ in range(4)]
    for item in items:
        spool.add(item)
    spool.close()
    smaller = Spool(tmp_path, 250)
    assert [c.chunk_id for c in smaller.pending()] == [items[2].chunk_id, items[3].chunk_id]
    assert smaller.dropped_events == 10
    smaller.close()


def test_a_torn_write_is_discarded_and_strangers_are_left_alone(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 10_000)
    kept = chunk(10)
    spool.add(kept)
    spool.close()
    torn = tmp_path / f"{'9' * 20}-1-{new_chunk_id().replace('/', '_')}.fwd.tmp"
    torn.write_bytes(b"half a chu")
    (tmp_path / "notes.txt").write_text("not ours")
    reopened = Spool(tmp_path, 10_000)
    assert [c.chunk_id for c in reopened.pending()] == [kept.chunk_id]
    assert not torn.exists()
    assert (tmp_path / "notes.txt").exists()
    reopened.close()


def test_two_live_users_of_one_directory_are_refused(tmp_path: Path) -> None:
    first = Spool(tmp_path, 1000)
    with pytest.raises(SpoolInUseError, match="in use by another process"):
        Spool(tmp_path, 1000)
    first.close()
    Spool(tmp_path, 1000).close()  # free again once the holder closes (or dies)


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="must be positive"):
        Spool(tmp_path, 0)
    spool = Spool(tmp_path, 1000)
    with pytest.raises(ValueError, match="not base64"):
        spool.add(EncodedChunk("../../etc", 1, b"x"))
    spool.close()


def test_a_chunk_deleted_behind_its_back_is_forgotten_and_counted(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 10_000)
    lost, kept = chunk(10, events=4), chunk(10)
    spool.add(lost)
    spool.add(kept)
    listed = spool.pending()
    listed[0].path.unlink()
    assert spool.read(listed[0]) is None
    assert [c.chunk_id for c in spool.pending()] == [kept.chunk_id]
    assert (spool.dropped_events, spool.size_bytes) == (4, 10)
    spool.close()
