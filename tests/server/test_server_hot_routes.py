"""`HotRoutes`: the hot requests reach their endpoint directly, with the app's exception
handlers; everything else goes through the app as before. And in the real app: `POST /prompt`
at both paths is answered by the prompt router's own endpoint without FastAPI's router, still
behind the request guard."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, HTTPException
from fastapi.exception_handlers import http_exception_handler
from server_harness import live_server, serve_app
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from flowscope.server.app import HOT_REQUESTS
from flowscope.server.errors import ApiError, api_error_handler
from flowscope.server.hot_routes import HotRoutes
from flowscope.server.middleware import RequestGuard
from flowscope.telemetry import Action, EventBus, InMemorySubscriber


class UnhandledError(Exception):
    """No handler is registered for it."""


def hot_app() -> tuple[HotRoutes, list[str]]:
    """HotRoutes over an app that notes each request it gets (the hot ones must not reach it)."""
    reached: list[str] = []
    inner = FastAPI()

    @inner.api_route("/{path:path}", methods=["GET", "POST"])
    def anything(path: str) -> dict[str, str]:
        reached.append(path)
        return {"via": "app"}

    async def hot(request: Request) -> Response:
        body = await request.body()
        if body == b"api-error":
            raise ApiError(400, "the body says so", type="invalid_prompt")
        if body == b"http-error":
            raise HTTPException(404, "no such thing")
        if body == b"oops":
            raise UnhandledError("unhandled")
        return JSONResponse({"via": "hot", "path": request.url.path, "body": body.decode()})

    handlers: dict[Any, Any] = {ApiError: api_error_handler, HTTPException: http_exception_handler}
    endpoints = {("POST", "/hot"): hot, ("POST", "/api/hot"): hot}
    return HotRoutes(inner, endpoints=endpoints, exception_handlers=handlers), reached


@pytest.fixture
def client() -> Iterator[tuple[httpx.Client, list[str]]]:
    app, reached = hot_app()
    with serve_app(app) as url, httpx.Client(base_url=url) as http:
        yield http, reached


def test_a_hot_request_reaches_its_endpoint_directly(client: Any) -> None:
    http, reached = client
    for path in ("/hot", "/api/hot"):
        answer = http.post(path, content=b"hello")
        assert answer.status_code == 200
        assert answer.json() == {"via": "hot", "path": path, "body": "hello"}
    assert reached == []


def test_other_methods_and_paths_go_through_the_app(client: Any) -> None:
    http, reached = client
    assert http.get("/hot").json() == {"via": "app"}  # GET is not hot
    assert http.post("/hot/").json() == {"via": "app"}
    assert http.post("/other").json() == {"via": "app"}
    assert reached == ["hot", "hot/", "other"]


def test_exceptions_get_the_apps_handlers(client: Any) -> None:
    http, _ = client
    answer = http.post("/hot", content=b"api-error")
    assert answer.status_code == 400
    assert answer.json() == ApiError(400, "the body says so", type="invalid_prompt").body()
    answer = http.post("/hot", content=b"http-error")
    assert (answer.status_code, answer.json()) == (404, {"detail": "no such thing"})


def test_an_exception_without_a_handler_propagates() -> None:
    app, _ = hot_app()
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/hot",
        "headers": [],
        "query_string": b"",
    }
    messages = [{"type": "http.request", "body": b"oops", "more_body": False}]

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(_message: dict[str, Any]) -> None:
        raise AssertionError("nothing is sent: Starlette's server-error middleware answers")

    with pytest.raises(UnhandledError):
        asyncio.run(app(scope, receive, send))


def test_the_app_answers_post_prompt_at_both_paths_without_its_router(tmp_path: Path) -> None:
    """The real app: the endpoint behind `POST /prompt` and `/api/prompt` is the prompt
    router's, and the request guard still sees (and logs) the request."""
    assert ("POST", "/prompt") in HOT_REQUESTS
    with live_server(tmp_path) as server:
        events = InMemorySubscriber(server.ctx.bus)
        layers = _layers(server.runtime.app.middleware_stack)
        names = [type(layer).__name__ for layer in layers]
        # Starlette's error middleware, the guard, the hot routes, then FastAPI's own layers.
        assert names.index("ServerErrorMiddleware") < names.index("RequestGuard")
        assert names.index("RequestGuard") < names.index("HotRoutes")
        hot = layers[names.index("HotRoutes")]
        assert hot.endpoints[("POST", "/prompt")] is hot.endpoints[("POST", "/api/prompt")]
        for path in ("/prompt", "/api/prompt"):
            prompt = {"1": {"class_type": "PrimitiveInt", "inputs": {"value": 1}}}
            prompt["2"] = {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}
            answer = server.client.post(path, json={"prompt": prompt})
            assert answer.status_code == 200, answer.text
            bad = server.client.post(path, content=b"{not json")
            assert bad.status_code == 400
            assert bad.json()["error"]["type"] == "invalid_json"
        requests = [e for e in events.events if e.action is Action.HTTP_REQUEST]
        assert [(e.get("url.path"), e.get("http.response.status_code")) for e in requests] == [
            ("/prompt", 200),
            ("/prompt", 400),
            ("/api/prompt", 200),
            ("/api/prompt", 400),
        ]


def _layers(stack: Any) -> list[Any]:
    layers = []
    while stack is not None:
        layers.append(stack)
        stack = getattr(stack, "app", None)
    return layers


def test_the_guard_still_refuses_a_cross_origin_prompt() -> None:
    bus = EventBus()
    app, _ = hot_app()
    guarded = RequestGuard(app, max_body_bytes=1024, bus=bus)
    with serve_app(guarded) as url, httpx.Client(base_url=url) as http:
        answer = http.post(
            "/hot", content=b"x", headers={"origin": "http://evil.example", "host": "127.0.0.1"}
        )
        assert answer.status_code == 403
        too_big = http.post("/hot", content=b"x" * 2048)
        assert too_big.status_code == 413
