"""Identifiers: UUIDv7 event ids (time-ordered, the idempotency key downstream) and W3C/OTel
trace and span ids."""

from __future__ import annotations

import random
import time

_random = random.Random()  # not for secrets: ids only need to be unique


def uuid7() -> str:
    """A UUIDv7 string: 48 bits of Unix milliseconds, then random bits (RFC 9562)."""
    ms = time.time_ns() // 1_000_000
    rand = _random.getrandbits(74)
    value = (ms & 0xFFFF_FFFF_FFFF) << 80 | 0x7 << 76 | (rand >> 62) << 64 | 0b10 << 62
    value |= rand & 0x3FFF_FFFF_FFFF_FFFF
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def new_trace_id() -> str:
    """32 lowercase hex digits, never all zero (W3C trace-context)."""
    return f"{_random.getrandbits(128) or 1:032x}"


def new_span_id() -> str:
    """16 lowercase hex digits, never all zero."""
    return f"{_random.getrandbits(64) or 1:016x}"
