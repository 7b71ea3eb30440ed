"""Errors a client can cause, answered as JSON in ComfyUI's error shape
(`{"error": {"type", "message", "details", "extra_info"}}`) instead of a traceback or a 500."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse


class ApiError(Exception):
    """Raise from a handler: becomes a JSON error reply with `status`."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "bad_request",
        details: str = "",
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.type = type
        self.message = message
        self.details = details
        self.extra = extra or {}
        self._body: dict[str, Any] | None = None

    def with_body(self, body: dict[str, Any]) -> ApiError:
        """Answer with exactly `body` (e.g. a ComfyUI validation error, which has its own shape)."""
        self._body = body
        return self

    def body(self) -> dict[str, Any]:
        if self._body is not None:
            return self._body
        error = {
            "type": self.type,
            "message": self.message,
            "details": self.details,
            "extra_info": {},
        }
        return {"error": error, **self.extra}


async def read_json(request: Request, *, what: str = "request body") -> Any:
    """The request body as JSON, or a 400 that says what is wrong with it and where."""
    raw = await request.body()
    if not raw:
        raise ApiError(400, f"the {what} is empty; expected JSON", type="invalid_json")
    try:
        return json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise ApiError(400, f"the {what} is not UTF-8 text", type="invalid_json") from exc
    except json.JSONDecodeError as exc:
        raise ApiError(
            400,
            f"the {what} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
            type="invalid_json",
        ) from exc


async def read_json_object(request: Request, *, what: str = "request body") -> dict[str, Any]:
    body = await read_json(request, what=what)
    if not isinstance(body, dict):
        raise ApiError(
            400, f"the {what} must be a JSON object, not {type(body).__name__}", type="invalid_json"
        )
    return body


async def api_error_handler(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return JSONResponse(exc.body(), status_code=exc.status)


async def validation_error_handler(_request: Request, exc: Exception) -> JSONResponse:
    # FastAPI answers 422 with pydantic's list; ComfyUI clients expect 400 and a message.
    assert isinstance(exc, RequestValidationError)
    problems = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error.get("loc", ()))
        problems.append(f"{where}: {error.get('msg', 'invalid')}")
    message = "; ".join(problems) or "invalid request"
    return JSONResponse(ApiError(400, message, type="invalid_request").body(), status_code=400)
