"""``GET /health/live``, ``GET /health/ready`` and ``GET /metrics`` (no API key: for orchestrators)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.errors import SERVER_ERROR, APIError, error_responses
from service.state import ServiceState, get_state

router = APIRouter(tags=["health"])


@router.get("/health/live")
async def live() -> dict[str, str]:
    """The process answers."""
    return {"status": "ok"}


@router.get("/health/ready", responses=error_responses(503))
async def ready(state: ServiceState = Depends(get_state)) -> dict[str, Any]:
    """200 once the voices are loaded and warmed up, 503 before (or when warm-up failed)."""
    if not state.ready:
        failed = state.warmup_error is not None
        raise APIError(
            503,
            f"warm-up failed: {state.warmup_error}" if failed else "loading and warming up voices",
            type=SERVER_ERROR,
            code="warmup_failed" if failed else "not_ready",
            headers={"Retry-After": str(state.settings.retry_after_s)},
        )
    assert state.engine is not None
    return {
        "status": "ready",
        "voices": [v.name for v in state.engine.voices],
        "providers": dict(state.engine.providers),
    }


@router.get("/metrics", response_class=Response)
async def metrics(state: ServiceState = Depends(get_state)) -> Response:
    """Prometheus text format."""
    state.metrics.update_heap()
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
