"""``GET /v1/audio/voices`` and ``GET /v1/models``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from service import __version__
from service.catalog import BLEND_SYNTAX, MODEL_ALIASES, MODEL_IDS
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
                "blendable": e.voice.blendable,
            }
            for e in state.catalog.entries
        ],
        "aliases": state.catalog.alias_table(),
        "blending": _blending(state),
    }


def _blending(state: ServiceState) -> dict[str, Any]:
    """How to mix speakers (the ``voice`` field takes a blend), and which ones can be mixed."""
    assert state.catalog is not None
    groups: dict[str, list[str]] = {}
    for e in state.catalog.entries:
        if e.voice.blendable:
            groups.setdefault(e.voice.name, []).append(e.id)
    example = next((f"{ids[-1]}(2)+{ids[0]}(1)" for ids in groups.values() if len(ids) > 1), None)
    return {
        "syntax": BLEND_SYNTAX,
        "example": example,
        "explanation": "A weighted mix of the speakers of one bundle: their speaker embeddings are averaged "
        "with these weights (normalized to sum 1) in the acoustic model and the vocoders, so the blend has "
        "its own timbre, pitch and timing. Weights are positive numbers (omitted = 1); OpenAI voice names "
        "work as speakers; the same seed gives the same audio.",
        "voices": groups,
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
