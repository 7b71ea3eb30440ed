"""One connection's failure modes, each with an error that names the endpoint or the cause:
refused, closed by the server, and bytes that are not msgpack."""

from __future__ import annotations

import socket
from collections.abc import Callable

import pytest
from forward_helpers import Script, fixture_entries
from forward_receiver import ForwardReceiver

from flowscope.telemetry.forward.connection import Endpoint, ForwardClosedError, ForwardConnection
from flowscope.telemetry.forward.protocol import ForwardError, ForwardProtocolError, encode_forward


def test_a_refused_connection_names_the_endpoint() -> None:
    receiver = ForwardReceiver().start()
    receiver.stop()
    with pytest.raises(
        ForwardError, match=rf"cannot connect to tcp://127\.0\.0\.1:{receiver.port}"
    ):
        ForwardConnection.open(Endpoint("127.0.0.1", receiver.port), None, 2)


def test_a_closed_connection_is_reported_as_closed(scripted: Callable[[Script], int]) -> None:
    def hang_up(conn: socket.socket) -> None:
        conn.recv(1)

    conn = ForwardConnection.open(Endpoint("127.0.0.1", scripted(hang_up)), None, 2)
    try:
        conn.send(encode_forward("t", fixture_entries(), chunk="AAAA"))
        with pytest.raises(ForwardClosedError):
            conn.read_acks()
    finally:
        conn.close()


def test_bytes_that_are_not_msgpack_are_a_protocol_error(
    scripted: Callable[[Script], int],
) -> None:
    def garbage(conn: socket.socket) -> None:
        conn.recv(1)
        conn.sendall(b"\xc1\xc1\xc1")  # 0xc1 is never used by msgpack
        conn.recv(1)

    conn = ForwardConnection.open(Endpoint("127.0.0.1", scripted(garbage)), None, 2)
    try:
        conn.send(b"\x90")
        with pytest.raises(ForwardProtocolError, match="not msgpack"):
            conn.read_acks()
    finally:
        conn.close()


def test_a_frame_that_is_not_an_ack_is_a_protocol_error(
    scripted: Callable[[Script], int],
) -> None:
    def chatty(conn: socket.socket) -> None:
        conn.recv(1)
        conn.sendall(b"\x81\xa4nack\xa1x")  # {"nack": "x"}
        conn.recv(1)

    conn = ForwardConnection.open(Endpoint("127.0.0.1", scripted(chatty)), None, 2)
    try:
        conn.send(b"\x90")
        with pytest.raises(ForwardProtocolError, match="unexpected frame"):
            conn.read_acks()
    finally:
        conn.close()
