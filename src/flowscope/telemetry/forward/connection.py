"""One connection to a Forward server: TCP (optionally wrapped in TLS), the shared-key handshake
when a key is set, then requests out and acks back on the same stream (keepalive)."""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgpack  # type: ignore[import-untyped]

from flowscope.telemetry.forward.handshake import (
    ForwardAuthError,
    SharedKeyAuth,
    encode_ping,
    new_salt,
    parse_helo,
    parse_pong,
    verify_pong,
)
from flowscope.telemetry.forward.protocol import (
    ForwardError,
    ForwardProtocolError,
    new_response_decoder,
    parse_ack,
)

_RECV_BYTES = 64 * 1024
# After the handshake: the longest one send (a whole chunk: sendall's timeout is its total
# time) or one read may block. Longer than a connect, so a big chunk on a slow link gets through.
_IO_TIMEOUT_S = 60.0


class ForwardClosedError(ForwardError):
    """The server closed (or reset) the connection."""


@dataclass(frozen=True)
class Endpoint:
    """Where to connect. `tls` wraps the stream (Fluentd `<transport tls>`, Fluent Bit
    `tls on`); `server_hostname` is the name its certificate must carry (default: `host`)."""

    host: str
    port: int = 24224
    tls: ssl.SSLContext | None = None
    server_hostname: str | None = None

    def __str__(self) -> str:
        scheme = "tls" if self.tls is not None else "tcp"
        return f"{scheme}://{self.host}:{self.port}"


class ForwardConnection:
    """An open, authenticated connection. Not thread-safe: one sender thread owns it."""

    def __init__(self, sock: socket.socket, decoder: msgpack.Unpacker, *, keepalive: bool) -> None:
        self._sock = sock
        self._decoder = decoder
        self.keepalive = keepalive  # False: the server closes after each request (Fluentd option)
        self.requests_sent = 0

    @classmethod
    def open(
        cls,
        endpoint: Endpoint,
        auth: SharedKeyAuth | None = None,
        timeout_s: float = 10.0,
        *,
        salt_factory: Callable[[], str] = new_salt,
    ) -> ForwardConnection:
        """Connect, wrap in TLS, and authenticate; raises ForwardError (ForwardAuthError for
        credentials) with a message naming the endpoint."""
        try:
            raw = socket.create_connection((endpoint.host, endpoint.port), timeout=timeout_s)
        except OSError as exc:
            raise ForwardError(f"cannot connect to {endpoint}: {exc}") from exc
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # Keepalive probes find a peer that vanished without a FIN while we wait for an ack.
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock = raw
        try:
            if endpoint.tls is not None:
                sock = _wrap_tls(raw, endpoint)
            decoder = new_response_decoder()
            keepalive = True
            if auth is not None:
                keepalive = _authenticate(sock, decoder, auth, endpoint, timeout_s, salt_factory)
            sock.settimeout(max(timeout_s, _IO_TIMEOUT_S))
        except BaseException:
            sock.close()
            raise
        return cls(sock, decoder, keepalive=keepalive)

    def fileno(self) -> int:
        return self._sock.fileno()

    def has_buffered(self) -> bool:
        """True when TLS holds decrypted bytes that a select() on the socket would not report."""
        return isinstance(self._sock, ssl.SSLSocket) and self._sock.pending() > 0

    def send(self, frame: bytes) -> None:
        try:
            self._sock.sendall(frame)
        except OSError as exc:
            raise ForwardClosedError(f"sending failed: {_describe(exc)}") from exc
        self.requests_sent += 1

    def read_acks(self) -> list[str]:
        """Read what has arrived (call when the socket is readable) and return its ack ids."""
        self._decoder.feed(_recv(self._sock))
        acks = []
        try:
            for frame in self._decoder:
                ack = parse_ack(frame)
                if ack is None:
                    raise _unexpected(frame)
                acks.append(ack)
        except (ValueError, msgpack.UnpackException) as exc:  # bytes that are not msgpack
            raise ForwardProtocolError(
                f"the server sent something that is not msgpack: {exc}"
            ) from exc
        return acks

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.close()


def _wrap_tls(raw: socket.socket, endpoint: Endpoint) -> ssl.SSLSocket:
    assert endpoint.tls is not None
    try:
        return endpoint.tls.wrap_socket(
            raw, server_hostname=endpoint.server_hostname or endpoint.host
        )
    except ssl.SSLCertVerificationError as exc:
        raise ForwardError(
            f"TLS: the certificate of {endpoint} is not trusted ({exc.verify_message}); pass a "
            "tls context that trusts the server's CA, e.g. ssl.create_default_context(cafile=...)"
        ) from exc
    except (ssl.SSLError, OSError) as exc:
        raise ForwardError(f"TLS handshake with {endpoint} failed: {_describe(exc)}") from exc


def _authenticate(
    sock: socket.socket,
    decoder: msgpack.Unpacker,
    auth: SharedKeyAuth,
    endpoint: Endpoint,
    timeout_s: float,
    salt_factory: Callable[[], str],
) -> bool:
    """HELO → PING → PONG; returns the server's keepalive flag."""
    deadline = time.monotonic() + timeout_s
    try:
        helo = parse_helo(_read_frame(sock, decoder, deadline))
    except TimeoutError as exc:
        raise ForwardAuthError(
            f"{endpoint} sent no HELO within {timeout_s:g}s: a shared_key is set but the server "
            "does not ask for one (no <security> / shared_key on its forward input?)"
        ) from exc
    except ForwardClosedError as exc:
        raise ForwardError(f"{endpoint} closed the connection before its HELO: {exc}") from exc
    salt = salt_factory()
    try:
        sock.sendall(encode_ping(helo, auth, salt))
        pong = parse_pong(_read_frame(sock, decoder, deadline))
    except TimeoutError as exc:
        raise ForwardAuthError(
            f"{endpoint} sent no PONG within {timeout_s:g}s of our PING; check that it speaks "
            "the Forward protocol with <security> on this port"
        ) from exc
    except (ForwardClosedError, OSError) as exc:
        # Fluent Bit closes without a word on a bad key; Fluentd resets after its PONG false.
        raise ForwardAuthError(
            f"authentication with {endpoint} failed: the server closed the connection after our "
            f"PING ({_describe(exc)}); check shared_key (and username/password) against the "
            "server's configuration"
        ) from exc
    verify_pong(pong, helo, auth, salt)
    return bool(helo.keepalive)


def _read_frame(sock: socket.socket, decoder: msgpack.Unpacker, deadline: float) -> Any:
    """The next whole msgpack object from the stream, waiting until `deadline`."""
    while True:
        for frame in decoder:
            return frame
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no complete frame before the deadline")
        previous = sock.gettimeout()
        sock.settimeout(remaining)
        try:
            data = _recv(sock)
        finally:
            sock.settimeout(previous)
        decoder.feed(data)


def _recv(sock: socket.socket) -> bytes:
    try:
        data = sock.recv(_RECV_BYTES)
    except TimeoutError:
        raise
    except OSError as exc:  # ECONNRESET, or a TLS stream cut without close_notify
        raise ForwardClosedError(_describe(exc)) from exc
    if not data:
        raise ForwardClosedError("the server closed the connection")
    return data


def _unexpected(frame: object) -> ForwardError:
    if isinstance(frame, list) and frame and frame[0] == b"HELO":
        return ForwardAuthError(
            "the server asked for shared-key authentication (HELO): set shared_key to the key "
            "in the server's <security> section"
        )
    text = repr(frame)
    return ForwardProtocolError(f"unexpected frame from the server: {text[:80]}")


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
