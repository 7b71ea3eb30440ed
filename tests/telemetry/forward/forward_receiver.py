"""A Forward protocol receiver for tests: a stand-in for Fluentd / Fluent Bit, which cannot run
here (spec/telemetry.md §9). Written from the protocol spec and checked byte for byte against
the captures of Fluentd 1.16.11 and Fluent Bit 5.1.1 in shared/fixtures/forward.

It decodes every mode (Message, Forward, PackedForward, CompressedPackedForward; EventTime or
integer times), plays the server side of the shared-key handshake in either server's style
(HELO layout, and how a bad key is refused), acks chunks, and can be told to stop acking, to go
down (resetting every connection, as Fluentd's listener does) and to come back on the same port.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import msgpack

MISMATCH = "shared_key mismatch"
_POLL_S = 0.02


class EventTime(NamedTuple):
    seconds: int
    nanoseconds: int

    @property
    def ns(self) -> int:
        return self.seconds * 1_000_000_000 + self.nanoseconds


def _ext_hook(code: int, data: bytes) -> Any:
    if code == 0 and len(data) == 8:
        return EventTime(*struct.unpack(">II", data))
    return msgpack.ExtType(code, data)


def new_request_decoder() -> msgpack.Unpacker:
    # surrogateescape: a str holding non-UTF-8 bytes (a Fluent Bit nonce, a binary salt) still
    # decodes, and `.encode("utf-8", "surrogateescape")` gives the bytes back.
    return msgpack.Unpacker(raw=False, unicode_errors="surrogateescape", ext_hook=_ext_hook)


def raw_bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8", "surrogateescape")


@dataclass
class Request:
    """One decoded request: its mode, tag, `(time, record)` entries and option map."""

    mode: str
    tag: str
    entries: list[tuple[EventTime | int, dict[str, Any]]]
    option: dict[str, Any]
    acked: bool = False

    @property
    def chunk(self) -> str | bytes | None:
        chunk: str | bytes | None = self.option.get("chunk")
        return chunk

    @property
    def records(self) -> list[dict[str, Any]]:
        return [record for _, record in self.entries]


def _entries(items: list[Any]) -> list[tuple[EventTime | int, dict[str, Any]]]:
    return [(item[0], item[1]) for item in items]


def decode_request(frame: Any) -> Request:
    """Any of the four modes, told apart by the type of the second element."""
    if not isinstance(frame, list) or len(frame) not in (2, 3, 4) or not isinstance(frame[0], str):
        raise ValueError(f"not a Forward request: {frame!r:.80}")
    tag, second = frame[0], frame[1]
    if isinstance(second, (EventTime, int)):  # Message: [tag, time, record(, option)]
        option = frame[3] if len(frame) == 4 else {}
        return Request("Message", tag, [(second, frame[2])], option)
    option = frame[2] if len(frame) == 3 else {}
    if isinstance(second, list):
        return Request("Forward", tag, _entries(second), option)
    payload = raw_bytes(second)  # bin as sent by us; str in the old spec, accepted by both
    mode = "PackedForward"
    if option.get("compressed") == "gzip":
        payload = gzip.decompress(payload)  # also joins several gzip members
        mode = "CompressedPackedForward"
    unpacker = new_request_decoder()
    unpacker.feed(payload)
    return Request(mode, tag, _entries(list(unpacker)), option)


def encode_ack(chunk: str | bytes) -> bytes:
    """`{"ack": chunk}`, echoing the chunk with its msgpack type, as both servers do."""
    ack: bytes = msgpack.packb({"ack": chunk}, use_bin_type=True)
    return ack


class ServerHandshake:
    """The server's side of the shared-key handshake, for one connection."""

    def __init__(
        self,
        shared_key: str,
        self_hostname: str,
        *,
        style: str = "fluentd",
        nonce: bytes | None = None,
        auth: bytes | None = None,
        keepalive: bool = True,
        users: dict[str, str] | None = None,
    ) -> None:
        if style not in ("fluentd", "fluent-bit"):
            raise ValueError(f"style must be 'fluentd' or 'fluent-bit', got {style!r}")
        self.shared_key = shared_key
        self.self_hostname = self_hostname
        self.style = style
        self.nonce = nonce if nonce is not None else os.urandom(16)
        self.auth = auth if auth is not None else os.urandom(16)
        self.keepalive = keepalive
        self.users = users

    def helo(self) -> bytes:
        if self.style == "fluent-bit":
            # Fluent Bit: {nonce, auth} as fixstr holding raw bytes, and no keepalive key.
            return b"\x92\xa4HELO\x82\xa5nonce\xb0" + self.nonce + b"\xa4auth\xb0" + self.auth
        helo: bytes = msgpack.packb(
            ["HELO", {"nonce": self.nonce, "auth": self.auth, "keepalive": self.keepalive}],
            use_bin_type=True,
        )
        return helo

    def answer(self, ping: Any) -> tuple[bytes | None, bool]:
        """(the PONG to send or None for a silent close, whether the client is in)."""
        reason = self._check(ping)
        if reason is None:
            salt = raw_bytes(ping[2])
            digest = _sha512_hex(
                salt, self.self_hostname.encode(), self.nonce, self.shared_key.encode()
            )
            pong: bytes = msgpack.packb(
                ["PONG", True, "", self.self_hostname, digest], use_bin_type=True
            )
            return pong, True
        if self.style == "fluent-bit":
            return None, False  # Fluent Bit closes without a word
        refusal: bytes = msgpack.packb(["PONG", False, reason, "", ""], use_bin_type=True)
        return refusal, False

    def _check(self, ping: Any) -> str | None:
        if not (isinstance(ping, list) and len(ping) == 6 and ping[0] == "PING"):
            return "invalid ping message"
        _, hostname, salt, digest, username, password_digest = ping
        if self.style == "fluent-bit" and not all(isinstance(part, str) for part in ping):
            return "invalid ping message"  # Fluent Bit rejects a bin salt
        expected = _sha512_hex(
            raw_bytes(salt), raw_bytes(hostname), self.nonce, self.shared_key.encode()
        )
        if digest != expected:
            return MISMATCH
        if self.users is not None:
            password = self.users.get(username)
            if password is None or password_digest != _sha512_hex(
                self.auth, username.encode(), password.encode()
            ):
                return "username/password mismatch"
        return None


def _sha512_hex(*parts: bytes) -> str:
    return hashlib.sha512(b"".join(parts)).hexdigest()


@dataclass
class _Generation:
    """One start..stop of the listener: its stop flag and threads."""

    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)


class ForwardReceiver:
    """A threaded Forward server on 127.0.0.1. `acking` can be switched at any time."""

    def __init__(
        self,
        *,
        shared_key: str | None = None,
        self_hostname: str = "fixture-server",
        style: str = "fluentd",
        keepalive: bool = True,
        users: dict[str, str] | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.shared_key = shared_key
        self.self_hostname = self_hostname
        self.style = style
        self.keepalive = keepalive
        self.users = users
        self.tls = tls
        self.acking = True
        self.port = 0
        self.requests: list[Request] = []
        self.connections = 0
        self.auth_failures = 0
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._generation: _Generation | None = None

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> ForwardReceiver:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        listener.settimeout(_POLL_S)
        self.port = listener.getsockname()[1]
        generation = _Generation()
        self._generation = generation
        self._spawn(generation, self._accept_loop, listener, generation)
        return self

    def stop(self) -> None:
        """Close the listener and reset every open connection."""
        generation, self._generation = self._generation, None
        if generation is None:
            return
        generation.stop.set()
        for thread in list(generation.threads):
            thread.join(5)

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> ForwardReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what arrived ---------------------------------------------------------------------
    def acked_requests(self) -> list[Request]:
        with self._lock:
            return [request for request in self.requests if request.acked]

    def acked_records(self) -> list[dict[str, Any]]:
        return [record for request in self.acked_requests() for record in request.records]

    def all_records(self) -> list[dict[str, Any]]:
        with self._lock:
            return [record for request in self.requests for record in request.records]

    def wait_for(self, condition: Callable[[], bool], timeout_s: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while not condition():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    # -- threads --------------------------------------------------------------------------
    def _spawn(self, generation: _Generation, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        generation.threads.append(thread)
        thread.start()

    def _accept_loop(self, listener: socket.socket, generation: _Generation) -> None:
        with listener:
            while not generation.stop.is_set():
                try:
                    conn, _ = listener.accept()
                except TimeoutError:
                    continue
                self.connections += 1
                self._spawn(generation, self._serve, conn, generation)

    def _serve(self, conn: socket.socket, generation: _Generation) -> None:
        sock: socket.socket = conn
        reset = True  # like Fluentd's listener (SO_LINGER 0): close with RST
        try:
            if self.tls is not None:
                conn.settimeout(5)
                sock = self.tls.wrap_socket(conn, server_side=True)
            sock.settimeout(_POLL_S)
            frames = self._frames(sock, generation)
            if self.shared_key is not None:
                handshake = ServerHandshake(
                    self.shared_key,
                    self.self_hostname,
                    style=self.style,
                    keepalive=self.keepalive,
                    users=self.users,
                )
                sock.sendall(handshake.helo())
                pong, ok = handshake.answer(next(frames))
                if not ok:
                    with self._lock:  # counted before the client can see the refusal
                        self.auth_failures += 1
                if pong is not None:
                    sock.sendall(pong)
                if not ok:
                    reset = self.style == "fluentd"
                    return
            for frame in frames:
                request = decode_request(frame)
                ack = request.chunk is not None and self.acking
                with self._lock:
                    self.requests.append(request)
                if ack:
                    assert request.chunk is not None
                    request.acked = True  # stored, then acked: as the real servers do
                    sock.sendall(encode_ack(request.chunk))
                    if not self.keepalive:
                        reset = False
                        return
        except (OSError, StopIteration):
            pass  # the client went away, or we are stopping
        except Exception as exc:  # a malformed request: record it and drop the connection
            self.errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            _close(sock, reset=reset)

    def _frames(self, sock: socket.socket, generation: _Generation) -> Iterator[Any]:
        decoder = new_request_decoder()
        while not generation.stop.is_set():
            try:
                data = sock.recv(65536)
            except TimeoutError:
                continue
            if not data:
                return
            decoder.feed(data)
            yield from decoder


def _close(sock: socket.socket, *, reset: bool) -> None:
    with contextlib.suppress(OSError):
        if reset:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
