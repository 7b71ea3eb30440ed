"""Identifiers: UUIDv7 event ids (time-ordered, the idempotency key downstream) and W3C/OTel
trace and span ids."""

from __future__ import annotations

import os
import random
import time

_random = random.Random()  # not for secrets: ids only need to be unique
# A forked worker would otherwise repeat its parent's random sequence, and so its ids.
os.register_at_fork(after_in_child=_random.seed)
_random_bits = _random.getrandbits
_time_ns = time.time_ns

_last_timestamp = 0  # the 60-bit (ms, sub-ms) timestamp of the last uuid7() in this process


def uuid7() -> str:
    """A UUIDv7 string (RFC 9562): 48 bits of Unix milliseconds, 12 bits of sub-millisecond
    time (§6.2 method 3), then 62 random bits.

    Ids from one process sort in the order they were made, even within a millisecond or when
    the clock steps back (the timestamp then advances by one tick instead of going back).
    """
    global _last_timestamp  # noqa: PLW0603 (one counter per process, on the hot path)
    # Milliseconds << 12 | the sub-millisecond fraction in 4096ths, in one step:
    # ns * 4096 // 10**6 (the millisecond part is an exact multiple of 4096).
    timestamp = _time_ns() * 512 // 125_000
    if timestamp <= _last_timestamp:
        timestamp = _last_timestamp + 1
    _last_timestamp = timestamp
    rand = _random_bits(62)
    return "%08x-%04x-7%03x-%04x-%012x" % (  # noqa: UP031 (the fastest way here)
        timestamp >> 28,  # the 48-bit milliseconds: 32 bits, then 16
        timestamp >> 12 & 0xFFFF,
        timestamp & 0xFFF,  # version 7, then 12 bits of sub-millisecond time
        0x8000 | rand >> 48,  # variant 0b10, then 62 random bits
        rand & 0xFFFF_FFFF_FFFF,
    )


def new_trace_id() -> str:
    """32 lowercase hex digits, never all zero (W3C trace-context)."""
    return f"{_random.getrandbits(128) or 1:032x}"


def new_span_id() -> str:
    """16 lowercase hex digits, never all zero."""
    return f"{_random.getrandbits(64) or 1:016x}"
