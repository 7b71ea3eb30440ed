"""One ASGI middleware for every request: the loopback origin guard or the opt-in CORS headers,
the request size limit, ComfyUI's cache-control headers and an `http.request` event.

Written as plain ASGI rather than Starlette's BaseHTTPMiddleware: it runs on every request of the
`POST /prompt` hot path, and BaseHTTPMiddleware costs a task and a stream per request.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

from flowscope.telemetry.bus import EventBus
from flowscope.telemetry.events import Action, Event, Level

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})
NO_CACHE_SUFFIXES = (".js", ".css")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".svg", ".ico")
CORS_METHODS = b"POST, GET, DELETE, PUT, OPTIONS, PATCH"
CORS_HEADERS = b"Content-Type, Authorization, Comfy-User"


class BodyTooLargeError(Exception):
    """The body grew past the limit while it was being read (no Content-Length up front)."""


class RequestGuard:
    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        cors_origin: str | None = None,
        bus: EventBus | None = None,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.cors_origin = cors_origin.encode() if cors_origin else None
        self.bus = bus

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        if self.cors_origin is None and _cross_origin_to_loopback(headers):
            # A web page must not drive a server on the visitor's machine (ComfyUI's guard).
            await _refuse(
                scope, send, 403, "cross-origin requests to a loopback server are refused"
            )
            return
        if kind == "websocket":
            await self.app(scope, receive, send)
            return
        if self.cors_origin is not None and scope["method"] == "OPTIONS":
            await _send_plain(send, 200, b"", self._cors_headers())
            return
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
            await self._too_large(send)
            return
        await self._serve(scope, receive, send, headers)

    async def _serve(
        self, scope: Scope, receive: Receive, send: Send, headers: dict[bytes, bytes]
    ) -> None:
        started = time.perf_counter_ns()
        path: str = scope["path"]
        status = 500
        response_started = False
        received = 0
        limit = self.max_body_bytes

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLargeError
            return message

        async def decorating_send(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                extra = _cache_control(path, status)
                if self.cors_origin is not None:
                    extra = [*extra, *self._cors_headers()]
                if extra:
                    message["headers"] = [*message.get("headers", ()), *extra]
            await send(message)

        try:
            await self.app(scope, counting_receive, decorating_send)
        except BodyTooLargeError:
            if not response_started:
                status = 413
                await self._too_large(send)
        finally:
            if self.bus is not None and self.bus.has_subscribers:
                self._emit(scope, headers, status, time.perf_counter_ns() - started)

    async def _too_large(self, send: Send) -> None:
        limit_mb = self.max_body_bytes / (1024 * 1024)
        body = {
            "error": {
                "type": "request_too_large",
                "message": f"the request body is larger than the {limit_mb:g} MB limit",
                "details": "raise it with --max-upload-size (in MB)",
            }
        }
        await _send_plain(
            send, 413, json.dumps(body).encode(), [(b"content-type", b"application/json")]
        )

    def _cors_headers(self) -> list[tuple[bytes, bytes]]:
        assert self.cors_origin is not None
        return [
            (b"access-control-allow-origin", self.cors_origin),
            (b"access-control-allow-methods", CORS_METHODS),
            (b"access-control-allow-headers", CORS_HEADERS),
            (b"access-control-allow-credentials", b"true"),
        ]

    def _emit(
        self, scope: Scope, headers: dict[bytes, bytes], status: int, duration_ns: int
    ) -> None:
        assert self.bus is not None
        fields: dict[str, Any] = {
            "http.request.method": scope["method"],
            "url.path": scope["path"],
            "http.response.status_code": status,
            "event.duration": duration_ns,
            "event.outcome": "success" if status < 400 else "failure",
        }
        client = scope.get("client")
        if client:
            fields["client.address"] = client[0]
        user = headers.get(b"comfy-user")
        if user:
            fields["user.id"] = user.decode("latin-1")
        level = Level.WARN if status >= 500 else Level.INFO
        message = f"{scope['method']} {scope['path']} {status}"
        self.bus.emit(Event(Action.HTTP_REQUEST, message, time.time_ns(), level, fields))


def _headers(scope: Scope) -> dict[bytes, bytes]:
    return {name.lower(): value for name, value in scope.get("headers", ())}


def _cross_origin_to_loopback(headers: dict[bytes, bytes]) -> bool:
    origin = headers.get(b"origin")
    host = headers.get(b"host")
    if not origin or not host:
        return False
    host_text = host.decode("latin-1").lower()
    if _hostname(host_text) not in LOOPBACK_HOSTS:
        return False
    origin_netloc = urlsplit(origin.decode("latin-1").lower()).netloc
    return origin_netloc != host_text


def _hostname(netloc: str) -> str:
    if netloc.startswith("["):
        return netloc[: netloc.find("]") + 1]
    return netloc.rsplit(":", 1)[0] if netloc.count(":") == 1 else netloc


def _cache_control(path: str, status: int) -> list[tuple[bytes, bytes]]:
    name = path.rsplit("/", 1)[-1]
    if path.endswith(NO_CACHE_SUFFIXES) or (name.startswith("index") and name.endswith(".json")):
        return [(b"cache-control", b"no-cache")]
    if path.endswith(IMAGE_SUFFIXES) or path in ("/view", "/api/view"):
        if status == 200:
            return [(b"cache-control", b"public, max-age=86400")]
        if status == 404:
            return [(b"cache-control", b"public, max-age=3600")]
    return []


async def _refuse(scope: Scope, send: Send, status: int, message: str) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008, "reason": message})
        return
    body = json.dumps({"error": {"type": "forbidden", "message": message, "details": ""}})
    await _send_plain(send, status, body.encode(), [(b"content-type", b"application/json")])


async def _send_plain(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    all_headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": all_headers})
    await send({"type": "http.response.body", "body": body})
