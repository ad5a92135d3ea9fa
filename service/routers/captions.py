"""``POST /v1/audio/speech/captioned``: speech with word timestamps (and subtitles) in one answer.

The shape follows Kokoro-FastAPI's captioned speech (``/dev/captioned_speech``, also served here
under that path): JSON with the audio file base64-encoded and ``timestamps``, a list of
``{word, start_time, end_time}`` in seconds of the returned audio, to which this server adds where
each word is in the input (``char_start``, ``char_end``: "$19.99" is one word) and its phonemes.
``phoneme_timestamps: true`` adds the phonemes' own times; ``subtitles: "srt" | "vtt"`` adds a
subtitle file built from the same timings (``service.timing``).

With ``stream: true`` the answer is newline-delimited JSON (``application/x-ndjson``), one object
per piece of audio as it is generated: ``{"audio": <base64 bytes of the response_format stream>,
"timestamps": [...the words that end in it]}``; concatenating the decoded ``audio`` fields gives the
file. A last object ``{"done": true, "duration": .., "subtitles": ..}`` closes it.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Literal

import anyio
import numpy as np
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field

from service.audio import encode, output_rate
from service.errors import APIError, error_responses
from service.routers.speech import (
    SpeechBody,
    Started,
    collect,
    encoded,
    phoneme_json,
    start,
    word_json,
)
from service.state import ServiceState, require_ready
from service.timing import Timeline, subtitles

router = APIRouter(tags=["speech"])


class CaptionedSpeechBody(SpeechBody):
    """``/v1/audio/speech``'s body, plus what to caption with."""

    subtitles: Literal["srt", "vtt"] | None = Field(
        None, description="Also return a subtitle file (SubRip or WebVTT) built from the word timings."
    )
    phoneme_timestamps: bool = Field(False, description="Also return every phoneme's start and end.")
    stream: bool = Field(
        False,
        description="Newline-delimited JSON as audio is generated: one {audio, timestamps} object per piece, "
        "then {done, duration, subtitles}.",
    )


class WordTimestamp(BaseModel):
    word: str = Field(..., description="The word as written in the input (punctuation around it stripped).")
    start_time: float = Field(..., description="Seconds from the start of the returned audio.")
    end_time: float
    char_start: int = Field(..., description="Offset of the word's first character in the input.")
    char_end: int = Field(..., description="Offset just past its last character.")
    phonemes: str = Field(..., description="The IPA that speaks it.")


class PhonemeTimestamp(BaseModel):
    phoneme: str
    start_time: float
    end_time: float


class CaptionedSpeech(BaseModel):
    audio: str = Field(..., description="The audio file (response_format), base64.")
    audio_format: str
    sample_rate: int
    duration: float = Field(..., description="Seconds of audio.")
    timestamps: list[WordTimestamp]
    phonemes: list[PhonemeTimestamp] | None = None
    subtitles: str | None = None


_RESPONSES = {
    200: {
        "description": "Audio with word timestamps (stream=true: newline-delimited JSON objects).",
        "content": {"application/x-ndjson": {}},
    },
    **error_responses(400, 401, 413, 415, 429, 500, 503, 504),
}


@router.post("/v1/audio/speech/captioned", response_model=CaptionedSpeech, responses=_RESPONSES)
async def captioned(
    body: CaptionedSpeechBody, request: Request, state: ServiceState = Depends(require_ready)
) -> Response:
    """Speak ``input`` (as ``POST /v1/audio/speech``) and say when each word is spoken."""
    if body.stream_format != "audio":
        raise APIError(
            400,
            "stream_format=sse is not offered here: use POST /v1/audio/speech with stream_format=sse and "
            "timestamps=true, or stream=true here for newline-delimited JSON.",
            param="stream_format",
            code="invalid_value",
        )
    started = await start(body, request, state, force_teacher=False, timestamps=True)
    if not isinstance(started, Started):
        return started
    if body.stream:
        started.headers["X-Accel-Buffering"] = "no"
        lines = _ndjson(started, body)
        return StreamingResponse(lines, media_type="application/x-ndjson", headers=started.headers)
    chunks = await collect(started)
    if chunks is None:
        return Response(status_code=499)
    timeline = Timeline()
    phonemes = []
    for c in chunks:
        phonemes.extend(timeline.add(c)[1])
    rate = started.first.sample_rate
    audio = np.concatenate([c.audio for c in chunks]).astype(np.float32)  # (T,)
    data = await anyio.to_thread.run_sync(encode, audio, rate, body.response_format)
    out = {
        "audio": base64.b64encode(data).decode("ascii"),
        "audio_format": body.response_format,
        "sample_rate": output_rate(body.response_format, rate),
        "duration": round(len(audio) / rate, 3),
        "timestamps": [word_json(w) for w in timeline.words],
    }
    if body.phoneme_timestamps:
        out["phonemes"] = [phoneme_json(p) for p in phonemes]
    if body.subtitles:
        out["subtitles"] = subtitles(timeline.words, body.input, body.subtitles, timeline.sentence_ends)
    return JSONResponse(out, headers=started.headers)


async def _ndjson(started: Started, body: CaptionedSpeechBody) -> AsyncIterator[bytes]:
    timeline = Timeline()
    fmt = body.response_format
    async for data, chunk in encoded(started.job, started.first, fmt, started.watcher):
        line: dict = {"audio": base64.b64encode(data).decode("ascii")}
        if chunk is not None:
            words, phonemes = timeline.add(chunk)
            line["timestamps"] = [word_json(w) for w in words]
            if body.phoneme_timestamps:
                line["phonemes"] = [phoneme_json(p) for p in phonemes]
        if data or (chunk is not None and line["timestamps"]):
            yield (json.dumps(line) + "\n").encode()
    done: dict = {"done": True, "duration": round(timeline.seconds, 3)}
    if body.subtitles:
        done["subtitles"] = subtitles(timeline.words, body.input, body.subtitles, timeline.sentence_ends)
    yield (json.dumps(done) + "\n").encode()


@router.post("/dev/captioned_speech", include_in_schema=False)
async def captioned_kokoro(
    body: CaptionedSpeechBody, request: Request, state: ServiceState = Depends(require_ready)
) -> Response:
    """The same as ``POST /v1/audio/speech/captioned``, at the path Kokoro-FastAPI clients call."""
    return await captioned(body, request, state)
