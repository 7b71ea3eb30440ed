"""The HTTP protocol `flowscope serve` runs: writes made in one turn of the event loop leave in
one socket write (a response's headers and body together), nothing is lost or reordered, and
real servers answer through it (keep-alive, pipelining, streaming)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from server_harness import serve_app

from flowscope.server.http_protocol import _JoinedWrites


class RecordingTransport:
    """Records what reaches the socket (the real transport's part in these unit tests)."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        assert not self.closed
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str) -> Any:
        return {"peername": ("127.0.0.1", 5555)}.get(name)


async def joined() -> tuple[_JoinedWrites, RecordingTransport]:
    real = RecordingTransport()
    transport: Any = real
    return _JoinedWrites(transport, asyncio.get_running_loop()), real


def test_writes_of_one_turn_leave_together_in_order() -> None:
    async def scenario() -> list[bytes]:
        transport, real = await joined()
        transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
        transport.write(memoryview(b"{}"))
        assert real.writes == []  # not before the turn ends
        await asyncio.sleep(0)
        transport.write(b"next")
        await asyncio.sleep(0)
        return real.writes

    assert asyncio.run(scenario()) == [
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}",
        b"next",
    ]


def test_close_sends_what_was_written_first_and_a_closed_socket_gets_nothing() -> None:
    async def scenario() -> RecordingTransport:
        transport, real = await joined()
        transport.write(b"last words")
        transport.close()
        transport.write(b"too late")  # uvicorn may write after the peer went away
        await asyncio.sleep(0)
        assert transport.get_extra_info("peername") == ("127.0.0.1", 5555)
        assert transport.is_closing()
        return real

    real = asyncio.run(scenario())
    assert real.writes == [b"last words"]
    assert real.closed


def app() -> FastAPI:
    api = FastAPI()

    @api.get("/small")
    def small() -> dict[str, int]:
        return {"answer": 42}

    @api.get("/stream")
    def stream() -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            for index in range(5):
                await asyncio.sleep(0.01)  # separate turns: separate writes, in order
                yield f"chunk{index};".encode()

        return StreamingResponse(chunks(), media_type="text/plain")

    return api


def read_responses(sock: socket.socket, count: int) -> bytes:
    data = b""
    while data.count(b"HTTP/1.1 200") < count or not data.endswith((b"}", b"0\r\n\r\n")):
        chunk = sock.recv(65536)
        assert chunk, f"the connection closed early: {data!r}"
        data += chunk
    return data


def test_a_real_server_answers_pipelined_and_streamed_requests() -> None:
    with serve_app(app()) as url:
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            request = b"GET /small HTTP/1.1\r\nhost: test\r\n\r\n"
            sock.sendall(request * 3)  # pipelined on one keep-alive connection
            answers = read_responses(sock, 3)
            assert answers.count(b'{"answer":42}') == 3
            sock.sendall(b"GET /stream HTTP/1.1\r\nhost: test\r\n\r\n")
            streamed = read_responses(sock, 1)
        body = streamed.split(b"\r\n\r\n", 1)[1]
        text = b"".join(body.split(b"\r\n")[1::2]).decode()
        assert text == "".join(f"chunk{index};" for index in range(5))
