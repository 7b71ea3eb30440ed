"""The shared-key handshake against the captures of Fluentd 1.16.11 and Fluent Bit 5.1.1: our PING
byte for byte, the digest inputs (which hostname, raw nonce bytes), PONG verification, both
servers' ways of refusing a bad key replayed over a real socket, and our test server's side."""

from __future__ import annotations

import hashlib
import socket
import struct
from collections.abc import Callable
from pathlib import Path

import msgpack
import pytest
from forward_helpers import (
    FLUENT_BIT,
    FLUENTD,
    SERVERS,
    Script,
    exchange,
    fixture_entries,
    manifest,
)
from forward_receiver import ForwardReceiver, ServerHandshake, new_request_decoder

from flowscope.telemetry.forward.connection import Endpoint, ForwardConnection
from flowscope.telemetry.forward.handshake import (
    ForwardAuthError,
    Helo,
    SharedKeyAuth,
    encode_ping,
    parse_helo,
    parse_pong,
    shared_key_digest,
    verify_pong,
)
from flowscope.telemetry.forward.protocol import encode_forward, new_response_decoder

INPUTS = manifest()["inputs"]
KEY, WRONG_KEY, SALT = INPUTS["shared_key"], INPUTS["wrong_key"], INPUTS["salt"]
CLIENT, SERVER = INPUTS["client_hostname"], INPUTS["server_hostname"]
IDS = {"ids": lambda path: path.name}


def frame(path: Path) -> object:
    decoder = new_response_decoder()
    decoder.feed(path.read_bytes())
    (only,) = list(decoder)
    return only


def helo_of(server: Path, name: str) -> Helo:
    return parse_helo(frame(server / f"{name}.helo.bin"))


@pytest.mark.parametrize("server", SERVERS, **IDS)
def test_helo_nonce_is_taken_as_raw_bytes(server: Path) -> None:
    helo = helo_of(server, "handshake-ok")
    recorded = exchange(server, "handshake-ok")
    assert helo.nonce == bytes.fromhex(recorded["nonce_hex"])
    assert helo.auth == bytes.fromhex(recorded["helo_auth_hex"])
    assert helo.keepalive is True  # Fluent Bit sends no keepalive key but keeps connections
    if server is FLUENT_BIT:
        with pytest.raises(UnicodeDecodeError):
            helo.nonce.decode("utf-8")


@pytest.mark.parametrize("server", SERVERS, **IDS)
@pytest.mark.parametrize(
    ("name", "key"), [("handshake-ok", KEY), ("handshake-wrong-key", WRONG_KEY)]
)
def test_our_ping_is_the_recorded_ping_byte_for_byte(server: Path, name: str, key: str) -> None:
    ping = encode_ping(helo_of(server, name), SharedKeyAuth(key, CLIENT), SALT)
    assert ping == (server / f"{name}.ping.bin").read_bytes()
    assert ping[ping.index(SALT.encode()) - 2 : ping.index(SALT.encode())] == b"\xd9\x20"  # str 8


@pytest.mark.parametrize("server", SERVERS, **IDS)
def test_recorded_pong_verifies_with_the_servers_own_hostname(server: Path) -> None:
    helo = helo_of(server, "handshake-ok")
    pong = parse_pong(frame(server / "handshake-ok.pong.bin"))
    assert pong.ok and pong.hostname == SERVER.encode()
    verify_pong(pong, helo, SharedKeyAuth(KEY, CLIENT), SALT)
    # The PONG digest hashes the server's hostname (from the PONG), not ours.
    salt, nonce = SALT.encode(), helo.nonce
    assert pong.digest.decode() == shared_key_digest(salt, SERVER.encode(), nonce, KEY.encode())
    assert pong.digest.decode() != shared_key_digest(salt, CLIENT.encode(), nonce, KEY.encode())
    expected = exchange(server, "handshake-ok")["pong_digest_expected"]
    assert pong.digest.decode() == expected


def test_fluentd_bin_salt_pong_shows_the_salt_is_hashed_as_its_ascii_bytes() -> None:
    helo = helo_of(FLUENTD, "handshake-bin-salt")
    pong = parse_pong(frame(FLUENTD / "handshake-bin-salt.pong.bin"))
    verify_pong(pong, helo, SharedKeyAuth(KEY, CLIENT), SALT)


def test_a_pong_with_a_wrong_or_upper_case_digest_is_refused() -> None:
    helo = helo_of(FLUENTD, "handshake-ok")
    pong = parse_pong(frame(FLUENTD / "handshake-ok.pong.bin"))
    auth = SharedKeyAuth(KEY, CLIENT)
    for digest in (pong.digest.upper(), b"0" * 128):
        forged = type(pong)(pong.ok, pong.reason, pong.hostname, digest)
        with pytest.raises(ForwardAuthError, match="does not match our shared_key"):
            verify_pong(forged, helo, auth, SALT)
    with pytest.raises(ForwardAuthError, match="does not match"):
        verify_pong(pong, helo, SharedKeyAuth(WRONG_KEY, CLIENT), SALT)


def test_fluentd_pong_false_is_an_auth_failure_with_its_reason() -> None:
    pong = parse_pong(frame(FLUENTD / "handshake-wrong-key.pong.bin"))
    assert not pong.ok
    helo = helo_of(FLUENTD, "handshake-wrong-key")
    with pytest.raises(ForwardAuthError, match="rejected our credentials: shared_key mismatch"):
        verify_pong(pong, helo, SharedKeyAuth(WRONG_KEY, CLIENT), SALT)


def test_user_auth_sends_the_username_and_password_digest() -> None:
    helo = helo_of(FLUENTD, "handshake-ok")
    ping = msgpack.unpackb(encode_ping(helo, SharedKeyAuth(KEY, CLIENT, "alice", "s3cret"), SALT))
    assert ping[4] == "alice"
    assert ping[5] == hashlib.sha512(helo.auth + b"alice" + b"s3cret").hexdigest()
    server = ServerHandshake(
        KEY, SERVER, nonce=helo.nonce, auth=helo.auth, users={"alice": "s3cret"}
    )
    assert server.answer(ping)[1] is True
    assert server.answer([*ping[:5], "0" * 128])[1] is False


def test_credentials_are_checked_when_made() -> None:
    with pytest.raises(ValueError, match="both username and password"):
        SharedKeyAuth(KEY, CLIENT, username="alice")
    with pytest.raises(ValueError, match="must not be empty"):
        SharedKeyAuth("", CLIENT)


# -- our test server's side, against the captures --------------------------------------------
def recorded_server(server: Path, name: str) -> ServerHandshake:
    helo = helo_of(server, name)
    style = "fluentd" if server is FLUENTD else "fluent-bit"
    return ServerHandshake(KEY, SERVER, style=style, nonce=helo.nonce, auth=helo.auth)


def ping_frame(server: Path, name: str) -> object:
    decoder = new_request_decoder()
    decoder.feed((server / f"{name}.ping.bin").read_bytes())
    return next(decoder)


@pytest.mark.parametrize("server", SERVERS, **IDS)
def test_our_test_server_sends_the_recorded_helo_and_pongs(server: Path) -> None:
    ok = recorded_server(server, "handshake-ok")
    assert ok.helo() == (server / "handshake-ok.helo.bin").read_bytes()
    assert ok.answer(ping_frame(server, "handshake-ok")) == (
        (server / "handshake-ok.pong.bin").read_bytes(),
        True,
    )
    refusal, accepted = recorded_server(server, "handshake-wrong-key").answer(
        ping_frame(server, "handshake-wrong-key")
    )
    assert not accepted
    if server is FLUENTD:
        assert refusal == (server / "handshake-wrong-key.pong.bin").read_bytes()
    else:
        assert refusal is None  # Fluent Bit closes without a PONG
    bin_salt, accepted = recorded_server(server, "handshake-bin-salt").answer(
        ping_frame(server, "handshake-bin-salt")
    )
    if server is FLUENTD:  # Fluentd takes a bin salt; Fluent Bit closes
        assert accepted and bin_salt == (server / "handshake-bin-salt.pong.bin").read_bytes()
    else:
        assert not accepted and bin_salt is None


# -- replaying a recorded server over a real socket --------------------------------------------
def read_exactly(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        more = conn.recv(size - len(data))
        assert more, f"client closed after {len(data)} of {size} bytes"
        data += more
    return data


def expect(conn: socket.socket, recorded: Path) -> None:
    wanted = recorded.read_bytes()
    assert read_exactly(conn, len(wanted)) == wanted, f"client did not send {recorded.name}"


def open_connection(port: int, key: str, timeout_s: float = 5.0) -> ForwardConnection:
    return ForwardConnection.open(
        Endpoint("127.0.0.1", port),
        SharedKeyAuth(key, CLIENT),
        timeout_s=timeout_s,
        salt_factory=lambda: SALT,
    )


@pytest.mark.parametrize("server", SERVERS, **IDS)
def test_handshake_and_ack_replayed_from_the_capture(
    server: Path, scripted: Callable[[Script], int]
) -> None:
    def recorded(conn: socket.socket) -> None:
        conn.sendall((server / "handshake-ok.helo.bin").read_bytes())
        expect(conn, server / "handshake-ok.ping.bin")
        conn.sendall((server / "handshake-ok.pong.bin").read_bytes())
        expect(conn, server / "handshake-ok.forward-request.bin")
        conn.sendall((server / "handshake-ok.forward-ack.bin").read_bytes())
        assert conn.recv(1) == b""  # the client closes when done

    port = scripted(recorded)
    chunk = exchange(server, "handshake-ok")["chunk"]
    conn = open_connection(port, KEY)
    try:
        assert conn.keepalive
        conn.send(encode_forward("flowscope.secure", fixture_entries(), chunk=chunk))
        assert conn.read_acks() == [chunk]
    finally:
        conn.close()


def test_fluentd_refusal_pong_false_then_reset_is_an_auth_failure(
    scripted: Callable[[Script], int],
) -> None:
    def refuse(conn: socket.socket) -> None:
        conn.sendall((FLUENTD / "handshake-wrong-key.helo.bin").read_bytes())
        expect(conn, FLUENTD / "handshake-wrong-key.ping.bin")
        conn.sendall((FLUENTD / "handshake-wrong-key.pong.bin").read_bytes())
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    port = scripted(refuse)
    with pytest.raises(ForwardAuthError, match="rejected our credentials: shared_key mismatch"):
        open_connection(port, WRONG_KEY)


def test_fluent_bit_refusal_by_closing_is_an_auth_failure(
    scripted: Callable[[Script], int],
) -> None:
    def refuse(conn: socket.socket) -> None:
        conn.sendall((FLUENT_BIT / "handshake-wrong-key.helo.bin").read_bytes())
        expect(conn, FLUENT_BIT / "handshake-wrong-key.ping.bin")

    port = scripted(refuse)
    with pytest.raises(ForwardAuthError, match="closed the connection after our PING"):
        open_connection(port, WRONG_KEY)


def test_a_server_that_sends_no_helo_is_reported(scripted: Callable[[Script], int]) -> None:
    def silent(conn: socket.socket) -> None:
        assert conn.recv(1) == b""

    port = scripted(silent)
    with pytest.raises(ForwardAuthError, match=r"sent no HELO within 0\.2s"):
        open_connection(port, KEY, timeout_s=0.2)


def test_a_helo_without_a_configured_key_says_to_set_one() -> None:
    with ForwardReceiver(shared_key=KEY) as receiver:
        conn = ForwardConnection.open(Endpoint("127.0.0.1", receiver.port), None)
        try:
            with pytest.raises(ForwardAuthError, match="set shared_key"):
                conn.read_acks()
        finally:
            conn.close()


@pytest.mark.parametrize("style", ["fluentd", "fluent-bit"])
def test_live_handshake_with_random_nonce_and_salt(style: str) -> None:
    with ForwardReceiver(shared_key=KEY, style=style) as receiver:
        conn = open_connection(receiver.port, KEY)
        try:
            conn.send(encode_forward("t", fixture_entries(), chunk="AAAA"))
            assert conn.read_acks() == ["AAAA"]
        finally:
            conn.close()
        with pytest.raises(ForwardAuthError, match=r"shared_key mismatch|closed the connection"):
            open_connection(receiver.port, WRONG_KEY)
        assert receiver.auth_failures == 1
