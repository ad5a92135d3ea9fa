"""Every error leaves the service in OpenAI's envelope: ``{"error": {"message", "type", "param", "code"}}``."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

INVALID_REQUEST = "invalid_request_error"
AUTHENTICATION = "authentication_error"
RATE_LIMIT = "rate_limit_error"
SERVER_ERROR = "server_error"


class APIError(Exception):
    """An error answered to the client as it is (message included): raise it anywhere in a request."""

    def __init__(
        self,
        status_code: int,
        message: str,
        *,
        type: str = INVALID_REQUEST,
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = dict(headers or {})


def envelope(message: str, type: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def error_response(exc: APIError) -> JSONResponse:
    return JSONResponse(
        envelope(exc.message, exc.type, exc.param, exc.code), status_code=exc.status_code, headers=exc.headers
    )


# The OpenAPI schema of the envelope (declared on the routes' error responses).
ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "param", "code"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
        }
    },
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: each status with the envelope schema."""
    return {
        code: {
            "description": HTTPStatus(code).phrase,
            "content": {"application/json": {"schema": ERROR_SCHEMA}},
        }
        for code in codes
    }


def _validation_error(exc: RequestValidationError) -> APIError:
    errors = exc.errors()
    first = errors[0] if errors else {}
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    kind = str(first.get("type", "invalid"))
    if kind == "json_invalid":
        return APIError(
            400,
            "We could not parse the JSON body of your request: "
            f"{first.get('ctx', {}).get('error', 'invalid JSON')}. The body must be a JSON object.",
            code="invalid_json",
        )
    if not loc and kind in ("model_attributes_type", "dict_type", "missing"):
        return APIError(400, "The request body must be a JSON object.", code="invalid_body")
    param = ".".join(loc) or None
    if kind == "extra_forbidden":  # OpenAI's answer to unknown fields (its wording; param: the first)
        extra = [
            ".".join(str(p) for p in e.get("loc", ()) if p != "body")
            for e in errors
            if e.get("type") == "extra_forbidden"
        ]
        if len(extra) > 1:
            return APIError(400, f"Unrecognized request arguments supplied: {', '.join(extra)}", param=param)
        return APIError(400, f"Unrecognized request argument supplied: {param}", param=param)
    message = str(first.get("msg", "Invalid request."))
    if param:
        message = f"Invalid value for '{param}': {message}"
        if "input" in first and kind != "missing":
            message += f" (got {_short(first['input'])})"
    return APIError(400, message, param=param, code=kind)


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(_validation_error(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        status = exc.status_code
        codes = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}
        if status == 404 and exc.detail == "Not Found":
            message = f"Unknown path: {request.method} {request.url.path}"
        elif status == 405:
            message = f"Method {request.method} is not allowed on {request.url.path}"
        elif status == 400 and exc.detail == "There was an error parsing the body":
            message = "We could not read the body of your request."
        else:
            message = str(exc.detail)
        kind = SERVER_ERROR if status >= 500 else INVALID_REQUEST
        code = codes.get(status, HTTPStatus(status).phrase.lower().replace(" ", "_"))
        return error_response(APIError(status, message, type=kind, code=code, headers=exc.headers))


class CatchAllMiddleware:
    """The last resort: an unhandled exception is logged with its traceback and answered with a
    500 envelope that reveals nothing of it. Installed innermost, so the server does not log it
    a second time. When the response has already started (a stream), the connection is aborted
    instead: the client must not take truncated audio for a complete one."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_tracking(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_tracking)
        except Exception as exc:
            if started:
                raise  # the server logs it and drops the connection
            log.error("unhandled error on %s %s", scope.get("method"), scope.get("path"), exc_info=exc)
            response = error_response(
                APIError(500, "The server had an error while processing your request.", type=SERVER_ERROR)
            )
            await response(scope, receive, send)
