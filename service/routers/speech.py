"""``POST /v1/audio/speech`` (OpenAI-compatible, student) and ``POST /v1/audio/speech/reference`` (teacher)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Literal

import anyio
import numpy as np
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.limits import MAX_PITCH, MAX_SEED, MAX_SPEED, MIN_PITCH, MIN_SPEED
from model.text.markup import MarkupError, has_markup, plan
from model.text.normalize import NormalizationOptions
from model.text.ssml import is_ssml
from service.audio import CONTENT_TYPES, FORMATS, StreamEncoder, available_formats, encode, output_rate
from service.catalog import MODEL_ALIASES, BlendError, is_hd_alias, resolve_model
from service.errors import RATE_LIMIT, SERVER_ERROR, APIError, error_responses
from service.scheduler import GenerationTimeout, Job, QueueFull
from service.state import ServiceState, require_ready
from service.timing import Timeline
from service.types import (
    AudioChunk,
    InputError,
    ModelKind,
    PhonemeTiming,
    SynthesisRequest,
    WordTiming,
)

log = logging.getLogger(__name__)

router = APIRouter(tags=["speech"])

DISCONNECT_POLL_S = 0.1


class VoiceRef(BaseModel):
    model_config = ConfigDict(strict=True)

    id: str = Field(..., max_length=200)


class NormalizationBody(BaseModel):
    """Which text normalization runs (a parawave extension; field names as Kokoro-FastAPI's)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    normalize: bool = Field(
        True, description="False: no normalization at all (espeak-ng reads numbers and symbols its own way)."
    )
    unit_normalization: bool = Field(True, description="'5 km' -> 'five kilometers'.")
    url_normalization: bool = Field(True, description="'example.com/docs' -> 'example dot com slash docs'.")
    email_normalization: bool = Field(True, description="'a@b.org' -> 'a at b dot org'.")
    phone_normalization: bool = Field(True, description="'555-123-4567' -> its digits in groups.")


class SpeechBody(BaseModel):
    """OpenAI's ``/v1/audio/speech`` body. An unknown field is a 400, as with OpenAI ("Unrecognized
    request argument supplied: X"); parawave's own fields (``seed``, ``pitch``,
    ``normalization_options``, ``stream``) are listed here and in the README.

    The schema lists the values this server takes (``enum``s, ``minLength``; the app adds the loaded
    voice names and the input limit), so clients and schema-driven tools see what will be accepted.
    Validation stays a little wider where OpenAI clients expect it (case-insensitive model names,
    ``aac``/``sse`` answered with a specific message)."""

    # no coercion (false is not a seed, "1" no speed); unknown fields: OpenAI's 400 (service.errors)
    model_config = ConfigDict(extra="forbid", strict=True)

    model: str = Field(
        "tts-1",
        max_length=200,
        description="Model name (case-insensitive): tts-1 and its aliases speak with the student, "
        "tts-1-hd with the voice's best model (its hd_model in GET /v1/audio/voices: the teacher unless the "
        "voice's export measured the student better; the student where the voice has no teacher).",
        json_schema_extra={"enum": list(MODEL_ALIASES)},
    )
    input: str = Field(
        ...,
        description="Text to speak; limits: settings.max_input_chars, the reference endpoint "
        "settings.reference_max_chars (longer input is rejected, not truncated).",
        json_schema_extra={"minLength": 1},
    )
    voice: str | VoiceRef | None = Field(
        None,
        description="Voice id or OpenAI voice name (GET /v1/audio/voices); omitted = default. A parawave "
        "extension: a blend of one bundle's speakers, 'slt(2)+rms(1)' (weights > 0, omitted = 1).",
    )
    response_format: Literal[FORMATS] = Field(  # type: ignore[valid-type]
        "mp3", json_schema_extra={"enum": list(available_formats())}
    )
    speed: float = Field(1.0, ge=MIN_SPEED, le=MAX_SPEED)
    stream: bool = Field(False, description="Chunked response as audio is generated (per sentence).")
    stream_format: Literal["audio", "sse"] = Field(
        "audio",
        description=(
            "'audio': the file's bytes (chunked with stream=true). 'sse': always streamed, as Server-Sent "
            "Events: speech.audio.delta events (base64 pieces of the response_format stream), then "
            "speech.audio.done."
        ),
    )
    instructions: str | None = Field(None, description="Accepted for compatibility; ignored (as tts-1).")
    seed: int | None = Field(None, ge=0, le=MAX_SEED, description="Noise seed for reproducible audio.")
    pitch: float = Field(
        0.0,
        ge=MIN_PITCH,
        le=MAX_PITCH,
        allow_inf_nan=False,
        description="Pitch shift in semitones (0 = the voice's own pitch; 12 = an octave up). A parawave "
        "extension, not part of OpenAI's API: the official OpenAI client sends it with "
        'extra_body={"pitch": 2}.',
    )

    timestamps: bool = Field(
        False,
        description="A parawave extension: with stream_format=sse, a speech.audio.timestamps event follows the "
        "audio of each sentence, with its words' times in seconds of the returned audio "
        "(see POST /v1/audio/speech/captioned for the word objects). OpenAI clients that switch on the "
        "event type skip it.",
    )
    normalization_options: NormalizationBody | None = Field(
        None,
        description="Text normalization switches (a parawave extension; the OpenAI client sends it in "
        'extra_body={"normalization_options": {"normalize": false}}). Omitted: everything on.',
    )

    @field_validator("input")
    @classmethod
    def _unicode_text(cls, text: str) -> str:
        # JSON escapes can carry lone surrogates ("\ud800"): not text, and no engine can encode them
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError(f"not valid Unicode text (a lone surrogate at character {exc.start})") from None
        return text


_SPEECH_RESPONSES = {
    200: {
        "description": "Audio in the requested format (stream_format=sse: events carrying it).",
        "content": {
            **{CONTENT_TYPES[f].split(";")[0]: {} for f in available_formats()},
            "text/event-stream": {},
        },
    },
    **error_responses(400, 401, 413, 415, 429, 500, 503, 504),
}


@router.post("/v1/audio/speech", response_class=Response, responses=_SPEECH_RESPONSES)
async def speech(
    body: SpeechBody, request: Request, state: ServiceState = Depends(require_ready)
) -> Response:
    """Speak ``input`` with the student (``tts-1``), or with the teacher for ``tts-1-hd`` (the student
    when the voice has no teacher)."""
    return await _speak(body, request, state, force_teacher=False)


@router.post("/v1/audio/speech/reference", response_class=Response, responses=_SPEECH_RESPONSES)
async def reference(
    body: SpeechBody, request: Request, state: ServiceState = Depends(require_ready)
) -> Response:
    """Speak ``input`` with the autoregressive teacher (the reference): slow, smaller limits, streams as
    it generates, stops when the client goes away."""
    return await _speak(body, request, state, force_teacher=True)


@dataclass
class Started:
    """A request that passed validation and produced its first chunk (see :func:`start`)."""

    job: Job
    first: AudioChunk
    watcher: asyncio.Task
    model: ModelKind
    headers: dict[str, str]


async def start(
    body: SpeechBody, request: Request, state: ServiceState, force_teacher: bool, timestamps: bool = False
) -> Started | Response:
    """Validate ``body``, queue its synthesis and wait for the first chunk: a :class:`Started`, or
    the response to give instead (499 when the client went away). Bad input raises APIError."""
    settings = state.settings
    kind = resolve_model(body.model)
    if kind is None:
        raise APIError(
            400,
            f"Unknown model {body.model!r}; use one of: {', '.join(MODEL_ALIASES)}.",
            param="model",
            code="model_not_found",
        )
    model: ModelKind = "teacher" if force_teacher else kind
    fmt = body.response_format
    if fmt not in available_formats():
        raise APIError(
            400,
            f"response_format {fmt!r} is not supported by this server; use one of: {', '.join(available_formats())}.",
            param="response_format",
            code="unsupported_response_format",
        )
    text = body.input
    if not text.strip():
        raise APIError(400, "'input' is empty: give some text to speak.", param="input", code="empty_input")
    assert state.catalog is not None
    voice_name = body.voice.id if isinstance(body.voice, VoiceRef) else body.voice
    try:
        entry = state.catalog.resolve(voice_name) or (
            state.catalog.resolve_blend(voice_name) if voice_name is not None else None
        )
    except BlendError as exc:
        raise APIError(400, f"Bad voice blend: {exc}.", param="voice", code="invalid_voice_blend") from None
    if entry is None:
        raise APIError(
            400,
            f"Unknown voice {voice_name!r}; available: {', '.join(state.catalog.ids)} "
            "(or an OpenAI voice name; see GET /v1/audio/voices).",
            param="voice",
            code="voice_not_found",
        )
    if not force_teacher and is_hd_alias(body.model):
        model = entry.voice.best_model
    if model not in entry.voice.models:
        raise APIError(
            400, f"Voice {entry.id!r} has no {model} model.", param="model", code="model_not_available"
        )
    limit = settings.reference_max_chars if model == "teacher" else settings.max_input_chars
    if len(text) > limit:
        raise APIError(
            400,
            f"'input' is {len(text)} characters; the {model} model takes at most {limit} (split the text).",
            param="input",
            code="string_above_max_length",
        )

    _check_markup(text)
    synthesis = SynthesisRequest(
        text=text,
        voice=entry.voice.name,
        speaker=entry.speaker,
        speed=body.speed,
        model=model,
        seed=body.seed,
        pitch=body.pitch,
        timestamps=timestamps,
        normalization=_normalization(body.normalization_options),
        blend=entry.blend,
    )
    try:
        job = state.pools[model].submit(synthesis)
    except QueueFull as exc:
        raise APIError(
            429,
            f"The {model} model is at capacity ({exc}); retry shortly.",
            type=RATE_LIMIT,
            code="queue_full",
            headers={"Retry-After": str(settings.retry_after_s)},
        ) from exc

    watcher = asyncio.create_task(_watch_disconnect(request, job))
    try:
        first = await _next(job)
    except BaseException:
        watcher.cancel()
        job.stop("error")
        raise
    if first is None:  # stopped before any audio (client gone) or the engine produced nothing
        watcher.cancel()
        if job.cancelled:
            return Response(status_code=499)
        raise APIError(400, "'input' has nothing to speak.", param="input", code="empty_input")

    rate = output_rate(fmt, first.sample_rate)
    headers = {
        "X-Sample-Rate": str(rate),
        "X-Parawave-Model": model,
        "X-Parawave-Voice": entry.id,
        "Cache-Control": "no-store",
    }
    return Started(job, first, watcher, model, headers)


async def _speak(body: SpeechBody, request: Request, state: ServiceState, force_teacher: bool) -> Response:
    timestamps = body.timestamps
    if timestamps and body.stream_format != "sse":
        raise APIError(
            400,
            "'timestamps' needs stream_format=sse (or use POST /v1/audio/speech/captioned for audio with "
            "word timestamps in one JSON document).",
            param="timestamps",
            code="invalid_value",
        )
    started = await start(body, request, state, force_teacher, timestamps)
    if not isinstance(started, Started):
        return started
    job, first, watcher, headers = started.job, started.first, started.watcher, started.headers
    chunks: list[AudioChunk] | None
    fmt, text = body.response_format, body.input
    media_type = CONTENT_TYPES[fmt]
    if body.stream_format == "sse":
        headers["X-Accel-Buffering"] = "no"  # proxies: pass events through as they come
        timeline = Timeline()
        events = _sse(encoded(job, first, fmt, watcher), len(text), timeline, first.sample_rate, timestamps)
        return StreamingResponse(events, media_type="text/event-stream", headers=headers)
    if body.stream:
        return StreamingResponse(_stream(job, first, fmt, watcher), media_type=media_type, headers=headers)

    chunks = await collect(started)
    if chunks is None:
        return Response(status_code=499)
    audio = np.concatenate([c.audio for c in chunks]).astype(np.float32)  # (T,)
    data = await anyio.to_thread.run_sync(encode, audio, first.sample_rate, fmt)
    headers["X-Audio-Duration"] = f"{len(audio) / first.sample_rate:.3f}"
    return Response(data, media_type=media_type, headers=headers)


async def collect(started: Started) -> list[AudioChunk] | None:
    """Every chunk of a started request (None when the client went away meanwhile)."""
    job, chunks = started.job, [started.first]
    try:
        while (chunk := await _next(job)) is not None:
            chunks.append(chunk)
    finally:
        started.watcher.cancel()
        job.stop("error")  # no-op when complete
    return None if job.cancel_reason == "client_gone" else chunks


def _normalization(options: NormalizationBody | None) -> NormalizationOptions | None:
    return None if options is None else NormalizationOptions(**options.model_dump())


def _check_markup(text: str) -> None:
    """SSML and inline phoneme markup are parsed here first, so that a mistake is a 400 that says where
    before any work is queued (the phonemes' symbols are checked by the engine, against the voice's)."""
    if not has_markup(text):
        return
    try:
        plan(text)
    except MarkupError as exc:
        code = "invalid_ssml" if is_ssml(text) else "invalid_markup"
        raise APIError(400, f"'input': {exc}", param="input", code=code) from None


async def _next(job: Job) -> AudioChunk | None:
    """The job's next chunk, with engine errors turned into API errors."""
    try:
        return await job.next_chunk()
    except InputError as exc:
        raise APIError(400, str(exc), param="input", code="invalid_input") from exc
    except GenerationTimeout as exc:
        raise APIError(504, f"Timed out: {exc}.", type=SERVER_ERROR, code="timeout") from exc


async def encoded(
    job: Job, first: AudioChunk, fmt: str, watcher: asyncio.Task
) -> AsyncIterator[tuple[bytes, AudioChunk | None]]:
    """(encoded bytes, the chunk they came from) as the job's chunks arrive; the encoder's tail last,
    with None. The bytes may be empty (an encoder that buffers)."""
    encoder = StreamEncoder(fmt, first.sample_rate)
    inline = fmt in ("wav", "pcm")  # cheap: no thread hop
    try:
        chunk: AudioChunk | None = first
        while chunk is not None:
            data = (
                encoder.write(chunk.audio)
                if inline
                else await anyio.to_thread.run_sync(encoder.write, chunk.audio)
            )
            yield data, chunk
            chunk = await job.next_chunk()  # an error here aborts the connection: the audio is incomplete
        tail = encoder.close() if inline else await anyio.to_thread.run_sync(encoder.close)
        yield tail, None
    finally:
        job.stop("client_gone")  # no-op when complete
        watcher.cancel()


async def _stream(job: Job, first: AudioChunk, fmt: str, watcher: asyncio.Task) -> AsyncIterator[bytes]:
    """The encoded bytes as the job's chunks arrive."""
    async for data, _ in encoded(job, first, fmt, watcher):
        if data:
            yield data


def word_json(w: WordTiming) -> dict:
    """A word timing as the API gives it (Kokoro-FastAPI's ``word``/``start_time``/``end_time``, plus
    where the word is in the input and its phonemes); seconds rounded to the millisecond."""
    return {
        "word": w.word,
        "start_time": round(w.start, 3),
        "end_time": round(w.end, 3),
        "char_start": w.char_start,
        "char_end": w.char_end,
        "phonemes": w.phonemes,
    }


def phoneme_json(p: PhonemeTiming) -> dict:
    return {"phoneme": p.phoneme, "start_time": round(p.start, 3), "end_time": round(p.end, 3)}


async def _sse(
    pieces: AsyncIterator[tuple[bytes, AudioChunk | None]],
    input_chars: int,
    timeline: Timeline,
    sample_rate: int,
    timestamps: bool = False,
) -> AsyncIterator[bytes]:
    """OpenAI's speech events around the encoded stream. ``usage`` counts what this server has, as
    there are no tokens: input characters, and output audio in 10 ms frames. With ``timestamps``, a
    ``speech.audio.timestamps`` event follows each chunk's audio (the words that end in it)."""
    async for data, chunk in pieces:
        if data:
            event = {"type": "speech.audio.delta", "audio": base64.b64encode(data).decode("ascii")}
            yield f"data: {json.dumps(event)}\n\n".encode()
        if chunk is None:
            continue
        words, _ = timeline.add(chunk)
        if timestamps and words:
            event = {"type": "speech.audio.timestamps", "words": [word_json(w) for w in words]}
            yield f"data: {json.dumps(event)}\n\n".encode()
    frames = round(timeline.samples * 100 / sample_rate)
    usage = {"input_tokens": input_chars, "output_tokens": frames, "total_tokens": input_chars + frames}
    yield f"data: {json.dumps({'type': 'speech.audio.done', 'usage': usage})}\n\n".encode()


async def _watch_disconnect(request: Request, job: Job) -> None:
    """Stop the job soon after the client goes away (while queued, generating or streaming)."""
    with contextlib.suppress(asyncio.CancelledError):
        while job.finished is None:
            if await request.is_disconnected():
                log.info("client went away: stopping %s generation", job.request.model)
                job.stop("client_gone")
                return
            await asyncio.sleep(DISCONNECT_POLL_S)
