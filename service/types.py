"""The seam between the HTTP service and the inference engine (torch-free: numpy only).

The service (``service/app.py``) talks to the engine only through :class:`SpeechEngine`; the
ONNX Runtime engine (``service/engine.py``) implements it, and the service tests use a fake.

Contract, in short:

* An engine serves one or more voice bundles (:class:`VoiceInfo`), each with one or more speakers.
* ``synthesize`` turns one :class:`SynthesisRequest` into audio, yielded as :class:`AudioChunk` s in
  order: the student yields one chunk per sentence; the teacher yields small chunks (a fraction of
  a second) as it generates, so the first audio goes out long before the sentence is done.
* ``synthesize_batch`` does the same for several student requests at once (dynamic batching): it
  yields ``(request index, chunk)`` pairs; each request's chunks arrive in its own order, requests
  interleave (e.g. round r synthesizes the r-th sentence of every request still speaking, batched).
  A request whose text cannot be spoken gets ``(index, InputError(...))`` instead, and the others
  go on: one bad text must not fail its batch mates.
* Both check their cancel event(s) between chunks (the teacher at least every ~0.2 s of work) and
  stop early, without error, once it is set: the service sets it when the client goes away or a
  timeout expires. A stopped request simply yields no further chunk.
* Engines are called from worker threads, several at once (one thread per running batch or
  teacher generation): they must be thread-safe. They never touch the event loop.
* Text the engine cannot speak (nothing left after normalization, ...) raises :class:`InputError`
  (the service answers 400 with its message); any other exception is a server error (500).

Loading: ``service/loading.py`` provides ``load_engine(voices_dir: Path, *, device: str,
require_cuda: bool) -> SpeechEngine`` (device is "auto" | "cpu" | "cuda"); it loads every bundle
under ``voices_dir`` and raises :class:`EngineLoadError` with a one-line reason when it cannot
(no bundle, broken bundle, CUDA asked with ``require_cuda`` and missing). ``parawave serve`` and
the app's lifespan call it through ``service.state.default_engine_loader``.

Implementation notes: make ``synthesize``/``synthesize_batch`` generators (lazy), so the service
can stop one by closing it; cut the text with ``model.text.frontend`` (text -> sentences -> ids) and
report each chunk's sentence and its character span in the input; check speed and pitch with
``core.limits``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

ModelKind = Literal["student", "teacher"]
MODEL_KINDS: tuple[ModelKind, ...] = ("student", "teacher")


class EngineLoadError(RuntimeError):
    """The engine could not be loaded (no or broken voice bundle, CUDA required but missing, ...).

    The message is one clear line for the operator; the service refuses to start with it.
    """


class InputError(ValueError):
    """The request is well formed but the text cannot be spoken (its message goes to the client)."""


@dataclass(frozen=True)
class VoiceInfo:
    """A loaded voice bundle (``voices/<name>/``)."""

    name: str  # bundle folder name
    sample_rate: int  # Hz, of every chunk this voice produces
    speakers: tuple[str, ...]  # speaker names inside the bundle; the first is the bundle's default
    models: tuple[ModelKind, ...] = MODEL_KINDS  # models the bundle ships ("teacher" is optional)
    # the bundle's measured choice for OpenAI's `tts-1-hd` ("the best this voice has"; voice.json
    # inference.hd_model), as written: best_model is what is served
    hd_model: ModelKind = "teacher"
    blendable: bool = False  # its speakers can be mixed (SynthesisRequest.blend): several, bundle format 3

    @property
    def best_model(self) -> ModelKind:
        """What `tts-1-hd` speaks with: ``hd_model`` when the bundle ships it, else its first model
        (the student of a voice without a teacher)."""
        return self.hd_model if self.hd_model in self.models else self.models[0]


@dataclass(frozen=True)
class SynthesisRequest:
    """What to say and how. ``voice`` and ``speaker`` are validated by the service beforehand."""

    text: str  # raw written text (the engine normalizes it), non-empty
    voice: str  # VoiceInfo.name
    speaker: str  # one of that voice's speakers
    speed: float = 1.0  # core.limits MIN_SPEED..MAX_SPEED; > 1 is faster (durations divided by speed)
    model: ModelKind = "student"
    seed: int | None = None  # noise seed; None = nondeterministic
    pitch: float = 0.0  # semitones (core.limits); 0 = the voice's own pitch (F0 * 2 ** (pitch / 12))
    # model.text.normalize.NormalizationOptions (the request's normalization_options); None = all on
    normalization: Any = None
    # a voice blend: ((speaker, weight), ...) of ``voice``'s speakers (weights > 0, normalized by the
    # engine); None = ``speaker`` alone
    blend: tuple[tuple[str, float], ...] | None = None
    # word and phoneme timings on the chunks (AudioChunk.words / .phonemes); off: none computed
    timestamps: bool = False


@dataclass(frozen=True)
class WordTiming:
    """When a written word is spoken. Times are seconds from the first sample of the chunk that
    carries it (negative when the word began in an earlier chunk of the same sentence: the
    teacher's small pieces); the service turns them into seconds of the whole response."""

    word: str  # as written in the input, punctuation around it stripped ("$19.99")
    start: float
    end: float
    char_start: int  # [char_start, char_end) offsets of `word` in the request's input
    char_end: int
    phonemes: str = ""  # the IPA that speaks it (stress marks included)


@dataclass(frozen=True)
class PhonemeTiming:
    """One phoneme (a base symbol with its stress and length marks) and when it sounds; times as in
    :class:`WordTiming`. Spaces and pause punctuation are phonemes too (" ", ",", ".")."""

    phoneme: str
    start: float
    end: float


@dataclass(frozen=True)
class AudioChunk:
    """A piece of the utterance, ready to encode."""

    audio: np.ndarray  # (T,) float32 mono in [-1, 1]; T may be 0 only for a final marker chunk
    sample_rate: int
    index: int  # 0, 1, 2, ... within the request
    is_last: bool  # True on the request's final chunk (unless stopped by cancellation)
    text: str = ""  # the sentence this chunk speaks (teacher: repeated on each of its chunks)
    span: tuple[int, int] = field(default=(0, 0))  # [start, end) character offsets of `text` in the input
    # with SynthesisRequest.timestamps: the words (and phonemes) whose audio *ends* in this chunk,
    # in order; every word of a sentence is on one of the sentence's chunks
    words: tuple[WordTiming, ...] = ()
    phonemes: tuple[PhonemeTiming, ...] = ()

    @property
    def duration(self) -> float:
        return len(self.audio) / self.sample_rate


@runtime_checkable
class CancelFlag(Protocol):
    """What the engine needs from a cancel signal (``threading.Event`` satisfies it)."""

    def is_set(self) -> bool: ...


@runtime_checkable
class SpeechEngine(Protocol):
    """What the HTTP service needs from an inference engine."""

    @property
    def voices(self) -> Sequence[VoiceInfo]:
        """Loaded voice bundles, in a stable order (the first is the default unless configured)."""
        ...

    @property
    def providers(self) -> Mapping[ModelKind, str]:
        """Execution provider actually running each model, e.g. {"student": "CUDAExecutionProvider",
        "teacher": "CPUExecutionProvider"}. Only models that some voice ships are listed."""
        ...

    def synthesize(self, request: SynthesisRequest, cancel: CancelFlag | None = None) -> Iterator[AudioChunk]:
        """Chunks of ``request`` in order (student: per sentence; teacher: small chunks as it
        generates). Stops early, quietly, once ``cancel`` is set."""
        ...

    def synthesize_batch(
        self,
        requests: Sequence[SynthesisRequest],
        cancels: Sequence[CancelFlag | None] | None = None,
    ) -> Iterator[tuple[int, AudioChunk | InputError]]:
        """Several student requests at once: ``(index into requests, chunk)`` pairs. Each request's
        chunks come in its own order; a request whose cancel flag is set gets no further chunk; a
        request whose text cannot be spoken gets one ``InputError`` (instead of raising)."""
        ...

    def warmup(self) -> None:
        """Run every model once over the expected shapes (length buckets, batch sizes) so the first
        real request is not slow. Blocking; the service is 'ready' only after it returns."""
        ...
