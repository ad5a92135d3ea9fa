"""A deterministic fake engine and a live-server helper for the HTTP service tests.

The fake speaks each sentence as a sine tone whose frequency and length follow from the sentence
text (10 ms per character at speed 1; ``pitch`` semitones scale the frequency by 2 ** (pitch / 12)),
so a response can be checked sample by sample against :func:`expected_audio`. Gates
(threading.Event) let tests hold the engine at known points instead of sleeping. The real fixture
bundle (issue 6) can replace it behind the same SpeechEngine protocol.
"""

from __future__ import annotations

import re
import socket
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace

import httpx
import numpy as np
import uvicorn

from core.limits import LimitError, check_pitch
from service.settings import Settings
from service.types import (
    AudioChunk,
    CancelFlag,
    InputError,
    SynthesisRequest,
    VoiceInfo,
    WordTiming,
)

RATE = 16000
SECONDS_PER_CHAR = 0.01
_SENTENCE = re.compile(r"[^.!?]+[.!?]*")


def sentences(text: str) -> list[tuple[str, int, int]]:
    out = []
    for m in _SENTENCE.finditer(text):
        s = m.group().strip()
        if any(c.isalnum() for c in s):
            start = m.start() + (len(m.group()) - len(m.group().lstrip()))
            out.append((s, start, start + len(s)))
    return out


def tone(sentence: str, rate: int = RATE, speed: float = 1.0, pitch: float = 0.0) -> np.ndarray:
    n = round(len(sentence) * SECONDS_PER_CHAR * rate / speed)
    freq = (200.0 + 20.0 * (zlib.crc32(sentence.encode()) % 40)) * 2.0 ** (pitch / 12)
    return (0.5 * np.sin(2 * np.pi * freq * np.arange(n) / rate)).astype(np.float32)  # (n,)


def expected_words(text: str, speed: float = 1.0) -> list[WordTiming]:
    """The fake's word timings, in seconds of the whole response: each whitespace token of a
    sentence spans its characters at SECONDS_PER_CHAR / speed (its phonemes: the token reversed)."""
    out, offset = [], 0.0
    for s, a, _ in sentences(text):
        per = SECONDS_PER_CHAR / speed
        for m in re.finditer(r"\S+", s):
            out.append(
                WordTiming(
                    m.group(),
                    offset + m.start() * per,
                    offset + m.end() * per,
                    a + m.start(),
                    a + m.end(),
                    m.group()[::-1],
                )
            )
        offset += round(len(s) * SECONDS_PER_CHAR * RATE / speed) / RATE
    return out


def expected_audio(text: str, rate: int = RATE, speed: float = 1.0, pitch: float = 0.0) -> np.ndarray:
    return np.concatenate([tone(s, rate, speed, pitch) for s, _, _ in sentences(text)])


class FakeEngine:
    """SpeechEngine protocol, deterministic. ``CRASH`` in the text makes it raise a RuntimeError."""

    def __init__(
        self,
        voices: Sequence[VoiceInfo] | None = None,
        *,
        sample_rate: int = RATE,
        chunk_delay: float = 0.0,
        teacher_chunk: int = 800,
        gate: threading.Event | None = None,
        hold_after_first: threading.Event | None = None,
        warmup_gate: threading.Event | None = None,
        park_after: int | None = None,
    ) -> None:
        self._voices = list(
            voices
            or [
                VoiceInfo("fake", sample_rate, ("alpha", "beta")),
                VoiceInfo("other", sample_rate, ("gamma",), models=("student",)),
            ]
        )
        self.chunk_delay = chunk_delay
        self.teacher_chunk = teacher_chunk
        self.gate = gate  # synthesis waits on it before starting
        self.hold_after_first = hold_after_first  # after a request's first chunk, waits on it
        self.warmup_gate = warmup_gate
        # after this many chunks of a request, wait (60 s at most) for its cancel flag instead of going on
        self.park_after = park_after
        self.parked = threading.Event()  # set when a generation parks
        self.warmed = threading.Event()
        self.started = threading.Event()  # set when any synthesis starts
        self.stopped = threading.Event()  # set when a generation notices its cancel flag
        self.lock = threading.Lock()
        self.calls: list[SynthesisRequest] = []
        self.batches: list[int] = []
        self.completed: list[str] = []
        self.chunks_made = 0

    @property
    def voices(self) -> Sequence[VoiceInfo]:
        return self._voices

    @property
    def providers(self):
        return {"student": "FakeExecutionProvider", "teacher": "FakeExecutionProvider"}

    def warmup(self) -> None:
        if self.warmup_gate is not None:
            assert self.warmup_gate.wait(60), "warm-up gate never opened"
        self.warmed.set()

    def _rate(self, request: SynthesisRequest) -> int:
        return next(v.sample_rate for v in self._voices if v.name == request.voice)

    def _begin(self, requests: Sequence[SynthesisRequest]) -> None:
        with self.lock:
            self.calls.extend(requests)
            self.batches.append(len(requests))
        self.started.set()
        if self.gate is not None:
            assert self.gate.wait(60), "engine gate never opened"

    def _note_stop(self) -> None:
        self.stopped.set()

    def _plan(
        self, request: SynthesisRequest
    ) -> list[tuple[np.ndarray, str, tuple[int, int], tuple[WordTiming, ...]]]:
        if "CRASH" in request.text:
            raise RuntimeError("engine exploded with secret internals")
        try:  # validated as OnnxEngine._check does
            pitch = check_pitch(request.pitch)
        except LimitError as exc:
            raise InputError(str(exc)) from None
        parts = sentences(request.text)
        if not parts:
            raise InputError("the text has nothing to speak after normalization")
        rate = self._rate(request)
        plan = []
        per = SECONDS_PER_CHAR / request.speed
        for s, a, b in parts:
            audio = tone(s, rate, request.speed, pitch)
            if request.model == "teacher":
                pieces = [audio[i : i + self.teacher_chunk] for i in range(0, len(audio), self.teacher_chunk)]
            else:
                pieces = [audio]
            words = [
                WordTiming(
                    m.group(), m.start() * per, m.end() * per, a + m.start(), a + m.end(), m.group()[::-1]
                )
                for m in re.finditer(r"\S+", s)
            ]
            done = 0.0
            for k, p in enumerate(pieces):  # each word on the piece its end falls in
                end = done + len(p) / rate
                last = k == len(pieces) - 1
                mine = [w for w in words if last or w.end <= end + 1e-9] if request.timestamps else []
                words = words[len(mine) :]
                shifted = tuple(replace(w, start=w.start - done, end=w.end - done) for w in mine)
                plan.append((p, s, (a, b), shifted))
                done = end
        return plan

    def synthesize(self, request: SynthesisRequest, cancel: CancelFlag | None = None) -> Iterator[AudioChunk]:
        self._begin([request])
        plan = self._plan(request)
        rate = self._rate(request)
        for i, (audio, s, span, words) in enumerate(plan):
            if i == self.park_after:
                self.parked.set()
                assert cancel is not None and cancel.wait(60), "parked generation was never cancelled"
            if cancel is not None and cancel.is_set():
                self._note_stop()
                return
            if self.chunk_delay:
                time.sleep(self.chunk_delay)
            with self.lock:
                self.chunks_made += 1
            try:
                yield AudioChunk(audio, rate, i, i == len(plan) - 1, s, span, words)
            except GeneratorExit:  # the caller stopped iterating (it saw the cancel flag first)
                self._note_stop()
                raise
            if i == 0 and self.hold_after_first is not None:
                assert self.hold_after_first.wait(60), "hold never released"
        with self.lock:
            self.completed.append(request.text)

    def synthesize_batch(
        self, requests: Sequence[SynthesisRequest], cancels: Sequence[CancelFlag | None] | None = None
    ) -> Iterator[tuple[int, AudioChunk | InputError]]:
        self._begin(requests)
        plans: list[list | None] = []
        for i, r in enumerate(requests):
            try:
                plans.append(self._plan(r))
            except InputError as exc:
                plans.append(None)
                yield i, exc
        rounds = max((len(p) for p in plans if p), default=0)
        for k in range(rounds):  # round k: the k-th chunk of every request still speaking
            if self.chunk_delay:
                time.sleep(self.chunk_delay)
            for i, (r, plan) in enumerate(zip(requests, plans, strict=True)):
                if plan is None or k >= len(plan):
                    continue
                if cancels is not None and cancels[i] is not None and cancels[i].is_set():
                    self._note_stop()
                    continue
                audio, s, span, words = plan[k]
                with self.lock:
                    self.chunks_made += 1
                yield i, AudioChunk(audio, self._rate(r), k, k == len(plan) - 1, s, span, words)
                if k == len(plan) - 1:
                    with self.lock:
                        self.completed.append(r.text)


def make_settings(**overrides) -> Settings:
    """Settings for tests: no .env, no PARAWAVE_ environment, small and explicit."""
    values = {"max_batch_delay_ms": 2.0, **overrides}
    return Settings(_env_file=None, **values)


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


class LiveServer:
    """The app on a real uvicorn server, on a loopback port, in a thread."""

    def __init__(self, app) -> None:
        self.app = app
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._socket.getsockname()[1]}"
        config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=5)
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    def start(self) -> LiveServer:
        self._thread.start()
        wait_for(lambda: self.server.started or not self._thread.is_alive(), what="uvicorn start")
        assert self.server.started, "uvicorn did not start"
        wait_for(lambda: httpx.get(f"{self.url}/health/ready").status_code == 200, what="ready")
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(15)
        self._socket.close()
