"""The FastAPI application: ``create_app(settings=None, engine=None)``.

Run it with ``parawave serve`` (uvicorn, ``service.app:create_app`` as a factory). The lifespan loads
the engine (``engine_loader(settings)``, by default ``service.loading.load_engine``; a failure stops
the server from starting), then warms it up in the background: ``/health/ready`` and the speech
routes answer 503 until that is done. With ``settings.wyoming_uri`` the lifespan also runs the
Wyoming server (``service/wyoming.py``: Home Assistant's protocol) on the same engine and pools.
Tests pass a fake engine.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service import __version__
from service.allocator import limit_arenas
from service.catalog import BLEND_PATTERN, VoiceCatalog
from service.errors import APIError, CatchAllMiddleware, error_response, install_error_handlers
from service.metrics import RequestMetricsMiddleware
from service.routers import captions, health, info, speech, web
from service.settings import Settings, get_settings
from service.state import EngineLoader, ServiceState, default_engine_loader, require_api_key
from service.types import SpeechEngine

__all__ = ["create_app", "default_engine_loader"]

log = logging.getLogger(__name__)

EXPOSED_HEADERS = ["X-Sample-Rate", "X-Audio-Duration", "X-Parawave-Model", "X-Parawave-Voice", "Retry-After"]


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    state: ServiceState = app.state.parawave
    await state.start()
    wyoming = None
    try:
        if state.settings.wyoming_uri:  # Home Assistant's protocol, on the same engine and pools
            from service.wyoming import WyomingService

            wyoming = WyomingService(state, state.settings.wyoming_uri)
            await wyoming.start()
        app.state.wyoming = wyoming
        yield
    finally:
        if wyoming is not None:
            await wyoming.stop()  # drains first: its syntheses still need the pools
        await state.stop()


def create_app(
    settings: Settings | None = None,
    engine: SpeechEngine | None = None,
    engine_loader: EngineLoader | None = None,
) -> FastAPI:
    """The app. ``engine`` (already loaded) wins over ``engine_loader`` (called at startup)."""
    settings = settings or get_settings()
    limit_arenas(settings.malloc_arena_max)  # before the serving threads exist (a worker process: here)
    app = FastAPI(
        title="parawave",
        version=__version__,
        summary="Text-to-speech: Parallel WaveNet student (OpenAI-compatible) and WaveNet teacher reference.",
        lifespan=_lifespan,
        redoc_url=None,
    )
    app.state.parawave = ServiceState(settings, engine, engine_loader)
    app.state.wyoming = None  # the WyomingService while it runs (settings.wyoming_uri)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    install_error_handlers(app)
    protected = [Depends(require_api_key)]
    routers = [
        (speech.router, protected),
        (captions.router, protected),
        (info.router, protected),
        (health.router, []),
        (web.router, []),
    ]
    for router, dependencies in routers:
        app.include_router(router, dependencies=dependencies)
    # Every route with its template (for metric labels and the JSON-body check).
    flat = [r for r in app.routes if hasattr(r, "path")] + [r for router, _ in routers for r in router.routes]

    json_posts = frozenset(r.path for r in flat if "POST" in (getattr(r, "methods", None) or ()))
    # Added innermost first: CORS -> metrics -> body guard -> catch-all -> routes.
    app.add_middleware(CatchAllMiddleware)
    app.add_middleware(BodyGuardMiddleware, max_body_bytes=settings.max_body_bytes, json_paths=json_posts)
    app.add_middleware(RequestMetricsMiddleware, metrics=app.state.parawave.metrics, routes=flat)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type"],
            expose_headers=EXPOSED_HEADERS,
        )
    return app


SPEECH_BODIES = ("SpeechBody", "CaptionedSpeechBody")  # request schemas that take `input` and `voice`


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema, made true to this server: no 422 (validation errors are 400s in the
    envelope), the input limit, and, once the engine is loaded, the voice names it takes."""
    if app.openapi_schema is None:
        schema = FastAPI.openapi(app)  # cached on the app
        for operations in schema["paths"].values():
            for operation in operations.values():
                operation.get("responses", {}).pop("422", None)
        components = schema.get("components", {}).get("schemas", {})
        for name in ("HTTPValidationError", "ValidationError"):
            components.pop(name, None)
        for name in SPEECH_BODIES:
            body = components.get(name)
            if body is not None:
                body["properties"]["input"]["maxLength"] = app.state.parawave.settings.max_input_chars
    schema = app.openapi_schema
    catalog: VoiceCatalog | None = app.state.parawave.catalog
    if catalog is None or "VoiceRef" not in schema.get("components", {}).get("schemas", {}):
        return schema
    schema = copy.deepcopy(schema)  # the voices come with the engine: not in the cached copy
    names = list(
        dict.fromkeys(
            [e.id for e in catalog.entries]
            + [f"{e.voice.name}/{e.speaker}" for e in catalog.entries]
            + [e.voice.name for e in catalog.entries]
            + sorted(catalog.aliases)
        )
    )
    components = schema["components"]["schemas"]
    components["VoiceRef"]["properties"]["id"]["enum"] = names
    blendable = any(e.voice.blendable for e in catalog.entries)
    for name in SPEECH_BODIES:
        options = components.get(name, {}).get("properties", {}).get("voice", {}).get("anyOf")
        if options is None:
            continue
        for option in options:
            if option.get("type") == "string":
                option["enum"] = names
        if blendable:  # a blend of speakers: "slt(2)+rms(1)"
            options.insert(1, {"type": "string", "pattern": BLEND_PATTERN, "description": "A voice blend."})
    return schema


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


class BodyGuardMiddleware:
    """Before a body is read: 415 unless it is JSON (on JSON routes), 413 when ``Content-Length``
    exceeds the limit; while it is read (chunked uploads): 413 once it passes the limit."""

    def __init__(self, app: ASGIApp, max_body_bytes: int, json_paths: frozenset[str]) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.json_paths = json_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        content_type = headers.get("content-type")
        if scope["path"] in self.json_paths and content_type is not None and not _is_json(content_type):
            await error_response(
                APIError(
                    415,
                    f"Content-Type must be application/json (got {content_type[:80]!r}).",
                    code="unsupported_media_type",
                )
            )(scope, receive, send)
            return
        length = headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                await error_response(APIError(400, "Invalid Content-Length header.", code="invalid_header"))(
                    scope, receive, send
                )
                return
            if int(length) > self.max_body_bytes:
                await error_response(self._too_large())(scope, receive, send)
                return
        limit = self.max_body_bytes
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    too_large = self._too_large()
                    raise StarletteHTTPException(413, detail=too_large.message)
            return message

        await self.app(scope, limited_receive, send)

    def _too_large(self) -> APIError:
        return APIError(
            413,
            f"Request body too large: the limit is {self.max_body_bytes} bytes.",
            code="payload_too_large",
        )
