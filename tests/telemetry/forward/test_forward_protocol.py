"""Request encoding and ack decoding, checked byte for byte against what was sent to (and
accepted by) Fluentd 1.16.11 and Fluent Bit 5.1.1; and our test receiver against their acks."""

from __future__ import annotations

import base64
import gzip
import pathlib
from pathlib import Path

import msgpack
import pytest
from forward_helpers import FIXTURES, SERVERS, exchange, fixture_entries, manifest
from forward_receiver import EventTime, decode_request, encode_ack, new_request_decoder
from hypothesis import given
from hypothesis import strategies as st

from flowscope.telemetry.forward.protocol import (
    encode_chunk,
    encode_forward,
    encode_message,
    encode_packed_forward,
    event_time,
    new_chunk_id,
    new_response_decoder,
    pack_entries,
    parse_ack,
)

MODES = ["message", "forward", "packed-forward", "compressed-packed-forward"]


def request_bytes(server: Path, mode: str) -> bytes:
    return (server / f"ack-{mode}.request.bin").read_bytes()


def test_event_time_is_ext_0_with_seconds_and_nanoseconds() -> None:
    for recorded in manifest()["inputs"]["event_times"]:
        time_ns = recorded["seconds"] * 1_000_000_000 + recorded["nanoseconds"]
        packed = msgpack.packb(event_time(time_ns))
        assert packed.hex() == recorded["msgpack_hex"]


@given(st.integers(min_value=0, max_value=(1 << 32) * 1_000_000_000 - 1))
def test_packed_entry_heads_are_eventtime_for_any_time(time_ns: int) -> None:
    record = {"message": "x"}
    assert pack_entries([(time_ns, record)]) == msgpack.packb([event_time(time_ns), record])
    decoder = new_request_decoder()
    decoder.feed(pack_entries([(time_ns, record)]))
    assert next(decoder)[0].ns == time_ns


def test_packed_entries_match_the_recorded_payload() -> None:
    assert pack_entries(fixture_entries()) == (FIXTURES / "entries.bin").read_bytes()


@pytest.mark.parametrize("server", SERVERS, ids=lambda path: path.name)
def test_message_forward_and_packed_requests_match_the_captures(server: Path) -> None:
    entries = fixture_entries()
    time_ns, record = entries[1]
    ids = {name: exchange(server, f"ack-{name}")["chunk"] for name in MODES}
    assert encode_message(
        "flowscope.message", time_ns, record, chunk=ids["message"]
    ) == request_bytes(server, "message")
    assert encode_forward("flowscope.forward", entries, chunk=ids["forward"]) == request_bytes(
        server, "forward"
    )
    assert encode_packed_forward(
        "flowscope.packed", entries, chunk=ids["packed-forward"]
    ) == request_bytes(server, "packed-forward")


@pytest.mark.parametrize("server", SERVERS, ids=lambda path: path.name)
def test_compressed_request_has_the_recorded_shape_and_payload(server: Path) -> None:
    chunk = exchange(server, "ack-compressed-packed-forward")["chunk"]
    ours = msgpack.unpackb(
        encode_packed_forward("flowscope.compressed", fixture_entries(), chunk=chunk, compress=True)
    )
    recorded = msgpack.unpackb(request_bytes(server, "compressed-packed-forward"))
    # The gzip bytes depend on the zlib build: compare what they hold, and everything else.
    assert gzip.decompress(ours[1]) == gzip.decompress(recorded[1])
    assert gzip.decompress(ours[1]) == (FIXTURES / "entries.bin").read_bytes()
    assert [ours[0], ours[2]] == [recorded[0], recorded[2]]
    assert list(ours[2]) == ["chunk", "size", "compressed"]
    assert ours[2]["compressed"] == "gzip"


def test_an_already_packed_payload_needs_its_count() -> None:
    payload = pack_entries(fixture_entries())
    with pytest.raises(ValueError, match="count"):
        encode_packed_forward("t", payload)
    frame = encode_packed_forward("t", payload, count=3, chunk="AAAA")
    assert msgpack.unpackb(frame)[2] == {"chunk": "AAAA", "size": 3}


def test_chunk_ids_are_base64_of_128_random_bits() -> None:
    ids = {new_chunk_id() for _ in range(1000)}
    assert len(ids) == 1000
    for chunk_id in list(ids)[:20]:
        assert len(chunk_id) == 24
        assert len(base64.b64decode(chunk_id, validate=True)) == 16


def test_encoded_chunk_round_trips_through_our_receiver_with_nanoseconds() -> None:
    entries = fixture_entries()
    for compress in (False, True):
        chunk = encode_chunk("flowscope", entries, compress=compress)
        decoder = new_request_decoder()
        decoder.feed(chunk.frame)
        request = decode_request(next(decoder))
        assert request.mode == ("CompressedPackedForward" if compress else "PackedForward")
        assert request.chunk == chunk.chunk_id
        assert chunk.events == 3
        assert request.records == [record for _, record in entries]
        assert [t for t, _ in request.entries] == [
            EventTime(*divmod(time_ns, 1_000_000_000)) for time_ns, _ in entries
        ]


def test_values_msgpack_cannot_carry_are_shipped_as_text() -> None:
    chunk = encode_chunk(
        "t", [(0, {"file": pathlib.PurePosixPath("/out/a.png"), "n": 1})], compress=False
    )
    decoder = new_request_decoder()
    decoder.feed(chunk.frame)
    assert decode_request(next(decoder)).records == [{"file": "/out/a.png", "n": 1}]


@pytest.mark.parametrize("server", SERVERS, ids=lambda path: path.name)
@pytest.mark.parametrize("mode", MODES)
def test_recorded_acks_decode_to_the_chunk_id(server: Path, mode: str) -> None:
    decoder = new_response_decoder()
    decoder.feed((server / f"ack-{mode}.response.bin").read_bytes())
    assert [parse_ack(frame) for frame in decoder] == [exchange(server, f"ack-{mode}")["chunk"]]


def test_frames_that_are_not_acks_are_not_taken_for_acks() -> None:
    for frame in ({b"ack": 1}, {b"nack": b"x"}, [b"ack", b"x"], {b"ack": b"x", b"y": 1}):
        assert parse_ack(frame) is None


@pytest.mark.parametrize("server", SERVERS, ids=lambda path: path.name)
@pytest.mark.parametrize("mode", MODES)
def test_our_receiver_answers_each_recorded_request_like_the_server(
    server: Path, mode: str
) -> None:
    decoder = new_request_decoder()
    decoder.feed(request_bytes(server, mode))
    request = decode_request(next(decoder))
    assert request.chunk is not None
    assert encode_ack(request.chunk) == (server / f"ack-{mode}.response.bin").read_bytes()
    expected = [fixture_entries()[1][1]] if mode == "message" else [r for _, r in fixture_entries()]
    assert request.records == expected
