"""The Forward protocol's shared-key handshake (spec/telemetry.md §8): the server's HELO, our PING
and the server's PONG, which we verify so that we only ship to a server that knows the key.

Checked against captures of Fluentd 1.16.11 and Fluent Bit 5.1.1 (shared/fixtures/forward):
frames are decoded with `raw=True` (Fluent Bit's nonce is a str that is not UTF-8), every PING
field goes out as msgpack str (Fluent Bit closes on a bin salt) and digests are lower-case hex.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass

from flowscope.telemetry.forward.protocol import ForwardError, new_packer


class ForwardAuthError(ForwardError):
    """The server refused our credentials, or could not prove it knows the shared key."""


@dataclass(frozen=True, slots=True)
class Helo:
    """The server's greeting: the nonce our digest must include, the salt for user auth."""

    nonce: bytes
    auth: bytes
    keepalive: bool


@dataclass(frozen=True, slots=True)
class Pong:
    ok: bool
    reason: str
    hostname: bytes
    digest: bytes


@dataclass(frozen=True)
class SharedKeyAuth:
    """What we prove and check in the handshake. `username`/`password` only matter when the
    server has user authentication; both servers send an `auth` salt even when it has none."""

    shared_key: str
    hostname: str
    username: str | None = None
    password: str | None = None

    def __post_init__(self) -> None:
        if not self.shared_key:
            raise ValueError("shared_key must not be empty: leave it None for a server without it")
        if (self.username is None) != (self.password is None):
            raise ValueError("give both username and password for user authentication, or neither")


def _text(value: object) -> bytes:
    # raw=True decoding gives bytes for both str and bin; anything else is not text at all.
    if isinstance(value, bytes):
        return value
    raise ForwardAuthError(f"expected text in the handshake, got {type(value).__name__}")


def parse_helo(frame: object) -> Helo:
    """`["HELO", {nonce, auth, keepalive}]`; Fluent Bit sends no keepalive key (yet keeps the
    connection open), so a missing key means keepalive."""
    if not (isinstance(frame, list) and len(frame) == 2 and frame[0] == b"HELO"):
        raise ForwardAuthError(f"expected the server's HELO, got {_preview(frame)}")
    options = frame[1] if isinstance(frame[1], dict) else {}
    nonce = options.get(b"nonce", b"")
    if not isinstance(nonce, bytes) or not nonce:
        raise ForwardAuthError("the server's HELO has no nonce")
    auth = options.get(b"auth", b"")
    return Helo(nonce, auth if isinstance(auth, bytes) else b"", options.get(b"keepalive", True))


def shared_key_digest(salt: bytes, hostname: bytes, nonce: bytes, shared_key: bytes) -> str:
    """hex(sha512(salt + hostname + nonce + shared_key)): the PING digest with our hostname,
    the PONG digest with the server's."""
    return hashlib.sha512(salt + hostname + nonce + shared_key).hexdigest()


def password_digest(auth_salt: bytes, username: str, password: str) -> str:
    """hex(sha512(auth + username + password)), the PING's last field under user auth."""
    return hashlib.sha512(auth_salt + username.encode() + password.encode()).hexdigest()


def new_salt() -> str:
    """32 lower-case hex characters, like out_forward's; hashed as those ASCII bytes."""
    return os.urandom(16).hex()


def encode_ping(helo: Helo, auth: SharedKeyAuth, salt: str) -> bytes:
    """`["PING", hostname, salt, digest, username, password_digest]`, every field a str."""
    digest = shared_key_digest(
        salt.encode(), auth.hostname.encode(), helo.nonce, auth.shared_key.encode()
    )
    username, secret = "", ""
    if helo.auth and auth.username is not None and auth.password is not None:
        username, secret = auth.username, password_digest(helo.auth, auth.username, auth.password)
    frame: bytes = new_packer().pack(["PING", auth.hostname, salt, digest, username, secret])
    return frame


def parse_pong(frame: object) -> Pong:
    """`["PONG", ok, reason, server_hostname, digest]`."""
    if not (isinstance(frame, list) and len(frame) == 5 and frame[0] == b"PONG"):
        raise ForwardAuthError(f"expected the server's PONG, got {_preview(frame)}")
    _, ok, reason, hostname, digest = frame
    return Pong(
        ok is True, _text(reason).decode("utf-8", "replace"), _text(hostname), _text(digest)
    )


def verify_pong(pong: Pong, helo: Helo, auth: SharedKeyAuth, salt: str) -> None:
    """Raise ForwardAuthError unless the server accepted us and proved it knows the key.

    The server's digest uses the hostname it puts in the PONG (its own `self_hostname`), with
    our salt and its nonce.
    """
    if not pong.ok:
        raise ForwardAuthError(
            f"the server rejected our credentials: {pong.reason or 'no reason given'}; check "
            "shared_key (and username/password) against the server's <security> section"
        )
    expected = shared_key_digest(salt.encode(), pong.hostname, helo.nonce, auth.shared_key.encode())
    if not hmac.compare_digest(pong.digest, expected.encode()):
        raise ForwardAuthError(
            f"the server ({pong.hostname.decode('utf-8', 'replace')}) answered with a digest that "
            "does not match our shared_key: it does not know the same key, so nothing was sent"
        )


def _preview(frame: object) -> str:
    text = repr(frame)
    return text if len(text) <= 80 else text[:77] + "..."
