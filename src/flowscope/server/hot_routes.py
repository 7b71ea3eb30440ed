"""`HotRoutes`: the few requests that are answered without FastAPI's router.

`POST /prompt` is the API's hottest request: a client script or a queue-filling tool sends
thousands a second. Between the request guard and the endpoint, FastAPI's stack (the included
routers' matching, the body-limit, exception and exit-stack middleware, the route's request
wrapper) costs about 70 µs of the interpreter per request, a sixth of what the whole request
costs the server. The endpoints named here are plain Starlette endpoints (a `Request` in, a
`Response` out), declared on their routers as usual (the OpenAPI schema, `/api` aliases, other
methods and slash redirects still go there); this layer only calls them directly, and turns
the exceptions the app has handlers for into the same responses. Anything else raised goes on
to Starlette's server-error middleware, as it would from the router.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

Endpoint = Callable[[Request], Awaitable[Response]]
# As Starlette keeps them: keyed by exception class (or status code), sync or async.
ExceptionHandler = Callable[[Request, Any], Response | Awaitable[Response]]


class HotRoutes:
    def __init__(
        self,
        app: ASGIApp,
        *,
        endpoints: Mapping[tuple[str, str], Endpoint],
        exception_handlers: Mapping[Any, ExceptionHandler],
    ) -> None:
        """`endpoints`: by (method, path); `exception_handlers`: the app's, by exception type."""
        self.app = app
        self.endpoints = dict(endpoints)
        self.exception_handlers: dict[Any, ExceptionHandler] = dict(exception_handlers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            endpoint = self.endpoints.get((scope["method"], scope["path"]))
            if endpoint is not None:
                await self._serve(endpoint, scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _serve(self, endpoint: Endpoint, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive, send)
        try:
            response = await endpoint(request)
        except Exception as exc:
            handler = self._handler_for(exc)
            if handler is None:
                raise
            answer = handler(request, exc)
            response = await answer if inspect.isawaitable(answer) else answer
        await response(scope, receive, send)

    def _handler_for(self, exc: Exception) -> ExceptionHandler | None:
        for kind in type(exc).__mro__:
            handler = self.exception_handlers.get(kind)
            if handler is not None:
                return handler
        return None
