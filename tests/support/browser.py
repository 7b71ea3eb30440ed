"""A real headless Chromium (Debian's, never a downloaded one) driven by Playwright, an ASGI app
behind uvicorn on 127.0.0.1 in a thread, and a record of what a page did (requests, errors,
WebSocket messages) with the editor's expected failures."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_available() -> bool:
    return CHROMIUM.is_file()


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless Chromium `Browser` (playwright.sync_api)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield browser
        finally:
            browser.close()


# What the editor may fail to fetch from a fresh install: files a user has not made yet (ComfyUI
# answers 404 for them too) and template thumbnails a pack does not ship. Paths after the base URL.
EXPECTED_404S = tuple(
    re.compile(pattern)
    for pattern in (
        r"/(api/userdata/)?user\.css",  # the user's own style sheet
        r"/api/userdata\?dir=(workflows|subgraphs)&.*",  # a listing of a folder not created yet
        r"/api/userdata/comfy\.templates\.json",  # the user's saved node templates
        r"/api/workflow_templates/[^/?]+/[^/?]+\.(jpg|jpeg|png|webp)",  # a template's thumbnail
    )
)
# The editor's release check; tests run offline, so it fails and must be the only outside request.
OFFLINE_HOSTS = frozenset({"api.comfy.org"})


@dataclass
class PageLoad:
    """What a page did while recorded: every request with its status, console errors, uncaught
    exceptions, and the JSON messages its WebSockets received."""

    requests: list[tuple[str, str, int | None]] = field(default_factory=list)  # method, url, status
    console_errors: list[str] = field(default_factory=list)  # "text (source url)"
    page_errors: list[str] = field(default_factory=list)
    websockets: list[str] = field(default_factory=list)
    ws_messages: list[dict[str, Any]] = field(default_factory=list)

    def failed(self, base_url: str) -> list[tuple[str, str, int | None]]:
        """Requests to `base_url` that answered 4xx / 5xx or got no answer."""
        return [
            (method, url, status)
            for method, url, status in self.requests
            if url.startswith(base_url) and (status is None or status >= 400)
        ]

    def problems(self, base_url: str) -> list[str]:
        """Everything that went wrong beyond `EXPECTED_404S` and `OFFLINE_HOSTS`: uncaught
        exceptions, other failed requests (any 5xx), outside requests, other console errors."""
        found = [f"uncaught exception: {error}" for error in self.page_errors]
        excused: set[str] = set()
        for method, url, status in self.requests:
            if url.startswith(base_url):
                path = url[len(base_url) :]
                if status == 404 and any(p.fullmatch(path) for p in EXPECTED_404S):
                    excused.add(url)
                elif status is None or status >= 400:
                    found.append(f"{method} {url} -> {status}")
            elif urlsplit(url).hostname in OFFLINE_HOSTS:
                excused.add(url)
            elif urlsplit(url).scheme not in ("blob", "data"):
                found.append(f"outside request: {method} {url}")
        for error in self.console_errors:
            if not (
                error.startswith("Failed to load resource:")
                and any(error.endswith(f" ({url})") for url in excused)
            ):
                found.append(f"console error: {error}")
        return found


def record(page: Any) -> PageLoad:
    """Start recording what `page` (a playwright `Page`) does; the record fills as it runs."""
    log = PageLoad()
    answered: set[Any] = set()

    def on_response(response: Any) -> None:
        answered.add(response.request)
        log.requests.append((response.request.method, response.url, response.status))

    def on_failed(request: Any) -> None:
        # A request the page dropped after its answer came (e.g. an unread body) is not a failure.
        if request not in answered:
            log.requests.append((request.method, request.url, None))

    def on_console(message: Any) -> None:
        if message.type == "error":
            where = message.location.get("url", "") if message.location else ""
            log.console_errors.append(f"{message.text} ({where})" if where else message.text)

    def on_frame(payload: str | bytes) -> None:
        if isinstance(payload, str):
            log.ws_messages.append(json.loads(payload))

    def on_websocket(socket_: Any) -> None:
        log.websockets.append(socket_.url)
        socket_.on("framereceived", on_frame)

    page.on("response", on_response)
    page.on("requestfailed", on_failed)
    page.on("console", on_console)
    page.on("pageerror", lambda error: log.page_errors.append(str(error)))
    page.on("websocket", on_websocket)
    return log


def load_page(
    browser: Any, url: str, *, settle_ms: int = 3000, timeout_ms: int = 60_000
) -> PageLoad:
    """Open `url` in a fresh context, wait for the network to settle, and record the load."""
    context = browser.new_context()
    page = context.new_page()
    log = record(page)
    try:
        page.goto(url, wait_until="networkidle", timeout=timeout_ms)
        page.wait_for_timeout(settle_ms)
    finally:
        context.close()
    return log
