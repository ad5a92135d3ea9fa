"""What the soak sends (``parawave soak``, :mod:`service.loadtest.soak`): its configuration and the
request plan drawn from a seeded RNG (same seed, same requests), malformed cases included."""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from service.loadtest.sentences import SENTENCES

FORMATS: tuple[str, ...] = ("mp3", "opus", "aac", "flac", "wav", "pcm")
MODELS: tuple[str, ...] = ("tts-1", "tts-1-hd")
VOICES: tuple[str, ...] = ("alloy", "nova", "fable", "echo", "shimmer", "onyx")  # OpenAI names (all voices)
Mode = Literal["whole", "stream", "sse", "malformed"]


@dataclass(frozen=True)
class SoakConfig:
    url: str
    requests: int = 960  # stop after this many requests ...
    duration_s: float = 1800.0  # ... or once a wave ends past this many seconds
    concurrency: int = 24  # requests per wave, sent at once
    seed: int = 0
    formats: tuple[str, ...] = FORMATS
    models: tuple[str, ...] = MODELS
    voices: tuple[str, ...] = VOICES
    stream_fraction: float = 0.45  # of the well-formed requests: streamed (chunked or SSE)
    sse_fraction: float = 0.3  # of the streamed ones: as Server-Sent Events
    abort_fraction: float = 0.8  # of the streamed ones: abandoned at a random byte
    abort_max_bytes: int = 40_000  # abandon after 0 .. this many bytes (0: right after the headers)
    malformed_fraction: float = 0.15
    max_sentences: int = 3  # each request speaks 1 .. this many sentences of the load-test texts
    warmup_waves: int = 3  # RSS growth is measured from the end of this wave
    max_growth_pct: float = 5.0
    settle_s: float = 60.0  # after a wave, wait this long at most for the in-flight gauge to reach 0
    timeout_s: float = 120.0  # per request
    ready_poll_s: float = 0.25
    api_key: str | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["api_key"] = "***" if self.api_key else None
        return d


@dataclass(frozen=True)
class Planned:
    """One request of the plan (drawn from the seeded RNG before the wave starts)."""

    index: int
    mode: Mode
    body: bytes
    content_type: str = "application/json"
    abort_at: int | None = None  # streamed: close the connection after this many bytes
    what: str = ""  # the malformed case, or "fmt/model/voice"


# ------------------------------------------------------------------------------------ the plan

# (name, body, content type, expected status); every answer must also be in the OpenAI error envelope
MALFORMED: tuple[tuple[str, bytes, str, int], ...] = (
    ("truncated_json", b'{"input": "Hello there", "voice": ', "application/json", 400),
    ("not_an_object", b'["Hello there"]', "application/json", 400),
    ("empty_input", b'{"input": ""}', "application/json", 400),
    ("blank_input", b'{"input": "   \\n  "}', "application/json", 400),
    ("missing_input", b'{"voice": "alloy"}', "application/json", 400),
    ("input_not_text", b'{"input": 42}', "application/json", 400),
    ("unknown_format", b'{"input": "Hello there", "response_format": "ogg"}', "application/json", 400),
    ("unknown_voice", b'{"input": "Hello there", "voice": "nobody"}', "application/json", 400),
    ("unknown_model", b'{"input": "Hello there", "model": "tts-9"}', "application/json", 400),
    ("speed_as_string", b'{"input": "Hello there", "speed": "1.0"}', "application/json", 400),
    ("speed_out_of_range", b'{"input": "Hello there", "speed": 9}', "application/json", 400),
    ("seed_as_bool", b'{"input": "Hello there", "seed": false}', "application/json", 400),
    ("pitch_out_of_range", b'{"input": "Hello there", "pitch": 99}', "application/json", 400),
    ("lone_surrogate", b'{"input": "Hello \\ud800 there"}', "application/json", 400),
    ("bad_stream_format", b'{"input": "Hello there", "stream_format": "video"}', "application/json", 400),
    ("too_long", json.dumps({"input": "word " * 1000}).encode(), "application/json", 400),
    ("not_json", b"input=Hello+there", "application/x-www-form-urlencoded", 415),
    ("too_large", json.dumps({"input": "x" * 70_000}).encode(), "application/json", 413),
)
EXPECTED_STATUS = {name: status for name, _, _, status in MALFORMED}


def plan_wave(config: SoakConfig, rng: random.Random, first: int, n: int) -> list[Planned]:
    """``n`` requests (indices ``first``..) drawn from ``rng``: the same seed gives the same plan."""
    out = []
    for i in range(first, first + n):
        if rng.random() < config.malformed_fraction:
            name, body, ctype, _ = rng.choice(MALFORMED)
            out.append(Planned(i, "malformed", body, ctype, what=name))
            continue
        fmt, model, voice = rng.choice(config.formats), rng.choice(config.models), rng.choice(config.voices)
        k = rng.randint(1, max(1, config.max_sentences))
        text = " ".join(rng.choice(SENTENCES) for _ in range(k))
        body: dict[str, Any] = {"model": model, "input": text, "voice": voice, "response_format": fmt}
        mode: Mode = "whole"
        abort_at = None
        if rng.random() < config.stream_fraction:
            mode = "sse" if rng.random() < config.sse_fraction else "stream"
            body["stream"] = True
            if mode == "sse":
                body["stream_format"] = "sse"
            if rng.random() < config.abort_fraction:
                abort_at = rng.randint(0, config.abort_max_bytes)
        out.append(
            Planned(i, mode, json.dumps(body).encode(), abort_at=abort_at, what=f"{fmt}/{model}/{voice}")
        )
    return out
