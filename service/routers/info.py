"""``GET /v1/audio/voices`` and ``GET /v1/models``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from service import __version__
from service.catalog import MODEL_ALIASES, MODEL_IDS
from service.errors import error_responses
from service.state import ServiceState, get_state
from service.types import MODEL_KINDS

router = APIRouter(tags=["info"])

_CREATED = 1767225600  # 2026-01-01, a fixed "created" for the model list


@router.get("/v1/audio/voices", responses=error_responses(401))
async def voices(state: ServiceState = Depends(get_state)) -> dict[str, Any]:
    """Voice ids for the ``voice`` field, the default one, and what OpenAI voice names map to."""
    assert state.catalog is not None
    return {
        "object": "list",
        "default": state.catalog.default.id,
        "data": [
            {
                "id": e.id,
                "object": "voice",
                "bundle": e.voice.name,
                "speaker": e.speaker,
                "sample_rate": e.voice.sample_rate,
                "models": [MODEL_IDS[m] for m in e.voice.models],
                "hd_model": MODEL_IDS[e.voice.best_model],
            }
            for e in state.catalog.entries
        ],
        "aliases": state.catalog.alias_table(),
    }


@router.get("/v1/models", responses=error_responses(401))
async def models(state: ServiceState = Depends(get_state)) -> dict[str, Any]:
    """The student and the teacher (OpenAI's list format), with the execution provider each runs on."""
    assert state.engine is not None
    providers = state.engine.providers
    data = []
    for kind in MODEL_KINDS:
        if not any(kind in v.models for v in state.engine.voices):
            continue
        data.append(
            {
                "id": MODEL_IDS[kind],
                "object": "model",
                "created": _CREATED,
                "owned_by": "parawave",
                "kind": kind,
                "provider": providers.get(kind, "unknown"),
                "aliases": sorted(a for a, k in MODEL_ALIASES.items() if k == kind and a != MODEL_IDS[kind]),
                "endpoint": "/v1/audio/speech/reference" if kind == "teacher" else "/v1/audio/speech",
                "version": __version__,
            }
        )
    return {"object": "list", "data": data}
