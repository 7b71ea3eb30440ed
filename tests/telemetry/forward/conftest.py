"""Forward sink fixtures: receivers and fast-retrying sinks that are stopped after each test,
and a throwaway TLS certificate."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from forward_helpers import FAST_RETRY, Certificate, EventSource, Script
from forward_receiver import ForwardReceiver

from flowscope.telemetry.forward import ForwardSink


@pytest.fixture(autouse=True)
def _close_event_sources() -> Iterator[None]:
    """Stops the pipelines (and their reporter threads) that a test's EventSources started."""
    yield
    while EventSource.opened:
        EventSource.opened.pop().close()


@pytest.fixture
def receivers() -> Iterator[Callable[..., ForwardReceiver]]:
    """`receivers(**options)` starts a receiver on a free port; all stop after the test."""
    started: list[ForwardReceiver] = []

    def start(**options: Any) -> ForwardReceiver:
        receiver = ForwardReceiver(**options).start()
        started.append(receiver)
        return receiver

    yield start
    for receiver in started:
        receiver.stop()


@pytest.fixture
def sinks(tmp_path: Path) -> Iterator[Callable[..., ForwardSink]]:
    """`sinks(port, **options)`: a ForwardSink with test-speed timings, closed after the test."""
    made: list[ForwardSink] = []

    def make(port: int, **options: Any) -> ForwardSink:
        settings: dict[str, Any] = {
            "spool_dir": tmp_path / "spool",
            "flush_interval_s": 0.02,
            "ack_timeout_s": 1.0,
            "connect_timeout_s": 2.0,
            "retry": FAST_RETRY,
        }
        settings.update(options)
        sink = ForwardSink("127.0.0.1", port, **settings)
        made.append(sink)
        return sink

    yield make
    for sink in made:
        sink.close(0)


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    """A self-signed certificate for 127.0.0.1, made with the openssl command line (the
    `cryptography` package is not installed in this project's environment)."""
    openssl = shutil.which("openssl")
    assert openssl, "the TLS tests need the openssl command (apt-get install openssl)"
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return Certificate(cert, key)


@pytest.fixture
def scripted() -> Iterator[Callable[[Script], int]]:
    """`scripted(script)` listens on a free port and runs `script` on the first connection."""
    failures: list[BaseException] = []
    threads: list[threading.Thread] = []

    def serve(script: Script) -> int:
        listener = socket.create_server(("127.0.0.1", 0))

        def run() -> None:
            with listener:
                conn, _ = listener.accept()
                conn.settimeout(5)
                try:
                    script(conn)
                except BaseException as exc:
                    failures.append(exc)
                finally:
                    conn.close()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        threads.append(thread)
        port: int = listener.getsockname()[1]
        return port

    yield serve
    for thread in threads:
        thread.join(5)
    if failures:
        raise failures[0]
