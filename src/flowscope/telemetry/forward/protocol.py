"""The Forward protocol's requests and acks as bytes (spec/telemetry.md §8): EventTime, the four
modes (Message, Forward, PackedForward, CompressedPackedForward), chunk ids and ack decoding.

Pure functions over msgpack, no sockets. Encodings follow what Fluentd 1.16 and Fluent Bit 5.1
accept (shared/fixtures/forward): text as msgpack str, payloads as bin, times as EventTime
(ext type 0), option keys in the order `chunk`, `size`, `compressed`.
"""

from __future__ import annotations

import base64
import gzip
import os
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import msgpack  # type: ignore[import-untyped]

EVENT_TIME_EXT = 0
_SECONDS_NANOS = struct.Struct(">II")
_NS_PER_S = 1_000_000_000

# One (time in ns since the epoch, record) pair: the unit every mode carries.
Entry = tuple[int, Mapping[str, Any]]


class ForwardError(Exception):
    """Shipping to a Forward server failed (connection, protocol or authentication)."""


class ForwardProtocolError(ForwardError):
    """The server sent something the Forward protocol does not allow here."""


def event_time(time_ns: int) -> msgpack.ExtType:
    """EventTime: ext type 0 holding uint32 seconds and uint32 nanoseconds, big-endian."""
    seconds, nanos = divmod(time_ns, _NS_PER_S)
    return msgpack.ExtType(EVENT_TIME_EXT, _SECONDS_NANOS.pack(seconds, nanos))


def new_chunk_id() -> str:
    """A chunk id as out_forward makes them: the base64 of 128 random bits (24 characters)."""
    return base64.b64encode(os.urandom(16)).decode("ascii")


def _unknown_to_text(value: object) -> str:
    # A field value msgpack cannot carry (a Path, an enum of another kind) must not lose the
    # whole batch: ship its text, as the JSON sinks do.
    return str(value)


def new_packer() -> msgpack.Packer:
    """A packer with the encodings the servers expect; not thread-safe, so one per thread."""
    return msgpack.Packer(use_bin_type=True, default=_unknown_to_text, autoreset=True)


# `[EventTime, ...` as bytes: fixarray of 2, fixext 8 of type 0, then seconds and nanoseconds.
# Writing this head directly instead of packing an ExtType halves the cost of a packed entry.
_ENTRY_HEAD = struct.Struct(">3sII")
_ENTRY_PREFIX = b"\x92\xd7" + bytes([EVENT_TIME_EXT])


def pack_entries(entries: Iterable[Entry], packer: msgpack.Packer | None = None) -> bytes:
    """The PackedForward payload: `[EventTime, record]` pairs packed one after another."""
    pack = (packer or new_packer()).pack
    head = _ENTRY_HEAD.pack
    return b"".join(
        [
            head(_ENTRY_PREFIX, *divmod(time_ns, _NS_PER_S)) + pack(record)
            for time_ns, record in entries
        ]
    )


def _option(chunk: str | None, size: int | None, compressed: bool = False) -> dict[str, Any]:
    option: dict[str, Any] = {}
    if chunk is not None:
        # str, never bin: Fluent Bit drops a request whose chunk id is bin.
        option["chunk"] = chunk
    if size is not None:
        option["size"] = size
    if compressed:
        # Fluentd does not sniff gzip: without this key it decodes the blob as garbage events.
        option["compressed"] = "gzip"
    return option


def encode_message(
    tag: str, time_ns: int, record: Mapping[str, Any], *, chunk: str | None = None
) -> bytes:
    """Message mode: `[tag, time, record]`, plus `{"chunk": id}` when an ack is wanted."""
    request: list[Any] = [tag, event_time(time_ns), record]
    if chunk is not None:
        request.append(_option(chunk, None))
    frame: bytes = new_packer().pack(request)
    return frame


def encode_forward(tag: str, entries: Iterable[Entry], *, chunk: str | None = None) -> bytes:
    """Forward mode: `[tag, [[time, record], ...], {"chunk": id, "size": n}]`."""
    pairs = [[event_time(time_ns), record] for time_ns, record in entries]
    frame: bytes = new_packer().pack([tag, pairs, _option(chunk, len(pairs))])
    return frame


def encode_packed_forward(
    tag: str,
    entries: Iterable[Entry] | bytes,
    *,
    count: int | None = None,
    chunk: str | None = None,
    compress: bool = False,
    compress_level: int = 6,
    packer: msgpack.Packer | None = None,
) -> bytes:
    """PackedForward `[tag, bin(entries), option]`, or CompressedPackedForward with `compress`.

    `entries` may be the already packed payload; then `count` is its number of entries.
    """
    if isinstance(entries, bytes):
        if count is None:
            raise ValueError("encode_packed_forward: give `count` with an already packed payload")
        payload = entries
    else:
        listed = list(entries)
        count = len(listed)
        payload = pack_entries(listed, packer)
    if compress:
        # mtime=0: the same events always make the same bytes, so a resent chunk is identical.
        payload = gzip.compress(payload, compresslevel=compress_level, mtime=0)
    frame: bytes = (packer or new_packer()).pack([tag, payload, _option(chunk, count, compress)])
    return frame


@dataclass(frozen=True, slots=True)
class EncodedChunk:
    """One request ready for the wire, with the id its ack will carry."""

    chunk_id: str
    events: int
    frame: bytes


def encode_chunk(
    tag: str,
    entries: Iterable[Entry],
    *,
    compress: bool,
    compress_level: int = 6,
    packer: msgpack.Packer | None = None,
) -> EncodedChunk:
    """A PackedForward (or, compressed, CompressedPackedForward) request with a new chunk id."""
    listed = list(entries)
    chunk_id = new_chunk_id()
    frame = encode_packed_forward(
        tag,
        listed,
        chunk=chunk_id,
        compress=compress,
        compress_level=compress_level,
        packer=packer,
    )
    return EncodedChunk(chunk_id, len(listed), frame)


def new_response_decoder() -> msgpack.Unpacker:
    """A stream decoder for what servers send. `raw=True`: Fluent Bit's HELO nonce is a str
    holding bytes that are not UTF-8, and every digest hashes the raw bytes anyway."""
    return msgpack.Unpacker(raw=True, max_buffer_size=1 << 20)


def parse_ack(frame: object) -> str | None:
    """The chunk id of an ack `{"ack": id}` (decoded with `raw=True`), or None if not an ack."""
    if not isinstance(frame, dict) or len(frame) != 1:
        return None
    value = frame.get(b"ack")
    if isinstance(value, bytes):
        return value.decode("ascii", "replace")
    return None
