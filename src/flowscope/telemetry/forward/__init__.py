"""Shipping events to Fluentd / Fluent Bit over the Forward protocol, at least once
(spec/telemetry.md §8): PackedForward + gzip, acks, a bounded disk spool, TLS and the shared-key
handshake."""

from flowscope.telemetry.forward.connection import Endpoint, ForwardConnection
from flowscope.telemetry.forward.handshake import ForwardAuthError, SharedKeyAuth
from flowscope.telemetry.forward.protocol import ForwardError, ForwardProtocolError
from flowscope.telemetry.forward.sender import ForwardSender, RetryPolicy
from flowscope.telemetry.forward.sink import ForwardSink
from flowscope.telemetry.forward.spool import Spool, SpoolInUseError

__all__ = [
    "Endpoint",
    "ForwardAuthError",
    "ForwardConnection",
    "ForwardError",
    "ForwardProtocolError",
    "ForwardSender",
    "ForwardSink",
    "RetryPolicy",
    "SharedKeyAuth",
    "Spool",
    "SpoolInUseError",
]
