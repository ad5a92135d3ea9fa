"""The Wyoming protocol server (Home Assistant's speech protocol), beside the HTTP one in one process.

``parawave serve --wyoming tcp://0.0.0.0:10200`` (setting ``wyoming_uri``) starts it in the app's
lifespan. It shares everything with the HTTP routes: the engine, the student pool (its bounded queue,
batching and timeouts), the metrics and the drain on shutdown. It speaks with the student only.

Events (the ``wyoming`` package's types):

* ``describe`` -> ``info``: one TTS program, ``parawave``, with every loaded voice bundle (its
  speakers, language, attribution, version) and ``supports_synthesize_streaming``.
* ``synthesize`` -> ``audio-start``, ``audio-chunk``... (16-bit mono PCM at the voice's rate),
  ``audio-stop``: the student's chunks (one per sentence) are written as they come.
* ``synthesize-start``, ``synthesize-chunk``..., ``synthesize-stop`` -> one ``audio-start``, the
  chunks, ``audio-stop``, ``synthesize-stopped``. Each sentence goes to the engine as soon as it is
  complete (``service/wyoming_text.py``: ``model.text.split_sentences`` on the text so far, every
  sentence but the last one is);
  the ``synthesize`` that Home Assistant sends inside a stream (for older servers) is ignored.
* ``ping`` -> ``pong``.

Bad input (unknown voice, empty or too long text, text with nothing to speak), a full queue (Wyoming
has no 429), a server not ready yet or shutting down, a timeout: an ``error`` event (``text``: one
line; ``code``: the HTTP API's error code, e.g. ``voice_not_found``, ``queue_full``). After an error
on ``synthesize`` the server closes the connection, as wyoming-piper does, so that a client waiting
for ``audio-stop`` does not hang; in a stream it stops speaking, takes the rest of the text, and
ends with ``synthesize-stopped`` as usual.

A connection that closes stops its generation (the job's cancel flag, as an HTTP disconnect does):
the handler reads events while the audio is written, so it sees the end of the connection at once.
Wyoming has no authentication: ``api_key`` guards HTTP only, so bind the Wyoming port to a trusted
network. With ``wyoming_zeroconf`` the server is announced over mDNS (``service/wyoming_zeroconf.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from wyoming.audio import AudioChunk as WyAudioChunk
from wyoming.audio import AudioStart, AudioStop
from wyoming.error import Error
from wyoming.event import Event
from wyoming.info import Attribution, Describe, Info, TtsProgram, TtsVoice, TtsVoiceSpeaker
from wyoming.ping import Ping, Pong
from wyoming.server import AsyncEventHandler, AsyncServer
from wyoming.tts import (
    Synthesize,
    SynthesizeChunk,
    SynthesizeStart,
    SynthesizeStop,
    SynthesizeStopped,
    SynthesizeVoice,
)

from service import __version__
from service.audio import to_pcm16
from service.catalog import VoiceEntry
from service.scheduler import GenerationTimeout, QueueFull
from service.state import ServiceState
from service.types import AudioChunk, InputError, SynthesisRequest
from service.wyoming_text import TextStream
from service.wyoming_zeroconf import Announcement

log = logging.getLogger(__name__)

LANGUAGE = "en_US"  # the text front end (model.text.g2p) is espeak-ng en-us
SAMPLES_PER_CHUNK = 1024  # audio per audio-chunk event (wyoming-piper's size): 64 ms at 16 kHz
WIDTH, CHANNELS = 2, 1  # 16-bit mono
ATTRIBUTION = Attribution(name="parawave", url="")  # no public home page to point at yet


class WyomingError(Exception):
    """An ``error`` event for the client: one line of ``text`` and the HTTP API's ``code``."""

    def __init__(self, code: str, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text


# ----------------------------------------------------------------------------------- handler


@dataclass
class _Audio:
    """The audio-start/chunk side of one response."""

    handler: WyomingHandler
    rate: int | None = None  # set once audio-start is out
    samples: int = 0
    first_at: float | None = None

    async def write(self, chunk: AudioChunk) -> None:
        if self.rate is None:
            self.rate = chunk.sample_rate
            await self.handler.write_event(AudioStart(rate=self.rate, width=WIDTH, channels=CHANNELS).event())
        pcm = to_pcm16(chunk.audio)  # (T,) -> 2T bytes
        step = SAMPLES_PER_CHUNK * WIDTH
        for i in range(0, len(pcm), step):
            event = WyAudioChunk(rate=self.rate, width=WIDTH, channels=CHANNELS, audio=pcm[i : i + step])
            await self.handler.write_event(event.event())
            if self.first_at is None:
                self.first_at = time.perf_counter()
        self.samples += len(chunk.audio)

    async def stop(self) -> None:
        if self.rate is not None:
            await self.handler.write_event(AudioStop().event())


class WyomingHandler(AsyncEventHandler):
    """One client connection. Events are read all the time (so a closed connection is seen at once);
    the work they ask for runs in order on the connection's own task."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, service: WyomingService
    ) -> None:
        super().__init__(reader, writer)
        self.service = service
        self.state = service.state
        self._ops: asyncio.Queue[Callable[[], Awaitable[bool]]] = asyncio.Queue()
        self._stream: TextStream | None = None
        self._runner = asyncio.create_task(self._run_ops(), name="parawave-wyoming-connection")
        service.connected(self)

    # -- reading side -----------------------------------------------------------------------------

    async def handle_event(self, event: Event) -> bool:
        try:
            self._dispatch(event)
        except (KeyError, TypeError, ValueError) as exc:  # a malformed event (missing or wrong fields)
            error = WyomingError(
                "invalid_event", f"malformed {event.type} event ({type(exc).__name__}: {exc})"
            )
            # after synthesize the client waits for audio-stop: as for any error there, end the connection
            ends = Synthesize.is_type(event.type)
            self._ops.put_nowait(lambda: self._error(error, keep_open=not ends))
        return True

    def _dispatch(self, event: Event) -> None:
        if Describe.is_type(event.type):
            self._ops.put_nowait(self._describe)
        elif Synthesize.is_type(event.type):
            if self._stream is None:  # inside a stream it is Home Assistant's copy for older servers
                request = Synthesize.from_event(event)
                self._ops.put_nowait(lambda: self._synthesize(request))
        elif SynthesizeStart.is_type(event.type):
            if self._stream is not None:  # a new stream without a stop: the old one ends here
                self._stream.close()
            stream = self._stream = TextStream()
            start = SynthesizeStart.from_event(event)
            self._ops.put_nowait(lambda: self._speak_stream(start.voice, stream))
        elif SynthesizeChunk.is_type(event.type):
            text = SynthesizeChunk.from_event(event).text
            if not isinstance(text, str):
                raise TypeError("text must be a string")
            if self._stream is None:
                error = WyomingError(
                    "invalid_event", "synthesize-chunk outside a stream (send synthesize-start)"
                )
                self._ops.put_nowait(lambda: self._error(error))
            else:
                self._stream.feed(text)
        elif SynthesizeStop.is_type(event.type):
            if self._stream is None:
                error = WyomingError(
                    "invalid_event", "synthesize-stop outside a stream (send synthesize-start)"
                )
                self._ops.put_nowait(lambda: self._error(error))
            else:
                self._stream.close()
                self._stream = None
        elif Ping.is_type(event.type):
            text = Ping.from_event(event).text
            self._ops.put_nowait(lambda: self._write_ok(Pong(text=text).event()))
        else:
            log.debug("wyoming: ignoring a %s event", event.type)

    async def disconnect(self) -> None:
        """The connection is over (closed by the client, or stopped): stop whatever it asked for."""
        if self._stream is not None:
            self._stream.close()
        self._runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._runner
        self.service.disconnected(self)

    # -- working side -----------------------------------------------------------------------------

    async def _run_ops(self) -> None:
        while True:
            op = await self._ops.get()
            try:
                keep_open = await op()
            except (ConnectionError, OSError):  # the client went away while we wrote
                keep_open = False
            except Exception:
                log.exception("wyoming: a request failed")
                keep_open = False
            if not keep_open:
                await self.stop()
                return

    async def _write_ok(self, event: Event) -> bool:
        await self.write_event(event)
        return True

    async def _error(self, error: WyomingError, keep_open: bool = True) -> bool:
        await self.write_event(Error(text=error.text, code=error.code).event())
        return keep_open

    async def _describe(self) -> bool:
        await self.write_event(self.service.info().event())
        return True

    async def _synthesize(self, request: Synthesize) -> bool:
        metrics = self.state.metrics
        audio = _Audio(self)
        started = time.perf_counter()
        with self.service.active():
            try:
                self._check_open()
                text = request.text if isinstance(request.text, str) else ""
                if not text.strip():
                    raise WyomingError("empty_input", "the text is empty: give some text to speak")
                limit = self.state.settings.max_input_chars
                if len(text) > limit:
                    raise WyomingError(
                        "string_above_max_length",
                        f"the text is {len(text)} characters; at most {limit} (split it, or stream it)",
                    )
                entry = self._voice(request.voice)
                await self._speak(entry, text, audio)
                await audio.stop()
            except WyomingError as exc:
                metrics.wyoming_requests.labels("synthesize", exc.code).inc()
                await self._error(exc)
                return False  # clients wait for audio-stop: end the connection (as wyoming-piper does)
            except (asyncio.CancelledError, ConnectionError, OSError):
                metrics.wyoming_requests.labels("synthesize", "client_gone").inc()
                raise
        metrics.wyoming_requests.labels("synthesize", "ok").inc()
        self._observe_first_audio("synthesize", audio, started)
        return True

    async def _speak_stream(self, voice: SynthesizeVoice | None, stream: TextStream) -> bool:
        metrics = self.state.metrics
        audio = _Audio(self)
        outcome = "ok"
        skipped = 0
        started = time.perf_counter()
        with self.service.active():
            try:
                self._check_open()
                entry = self._voice(voice)
                limit = self.state.settings.max_input_chars
                while (text := await stream.next_text(limit)) is not None:
                    try:
                        await self._speak(entry, text, audio)
                    except WyomingError as exc:
                        if exc.code != "invalid_input":
                            raise
                        skipped += 1  # a sentence with nothing to say ("?!"): the next ones go on
                        log.debug("wyoming stream: skipped %r (%s)", text[:80], exc)
                if audio.rate is None:
                    if skipped:
                        raise WyomingError("invalid_input", "the text has nothing to speak")
                    raise WyomingError("empty_input", "the stream had no text: send synthesize-chunk events")
            except WyomingError as exc:
                outcome = exc.code
                await self._error(exc)
                while await stream.next_text(1 << 30) is not None:  # take the rest of the text
                    pass
            except (asyncio.CancelledError, ConnectionError, OSError):
                metrics.wyoming_requests.labels("stream", "client_gone").inc()
                raise
            await audio.stop()
            await self.write_event(SynthesizeStopped().event())
        metrics.wyoming_requests.labels("stream", outcome).inc()
        if outcome == "ok":
            self._observe_first_audio("stream", audio, started)
        return True

    def _observe_first_audio(self, mode: str, audio: _Audio, started: float) -> None:
        if audio.first_at is not None:
            self.state.metrics.wyoming_first_audio.labels(mode).observe(audio.first_at - started)

    def _check_open(self) -> None:
        if self.service.draining:
            raise WyomingError("shutting_down", "the server is shutting down; retry on another instance")
        if not self.state.ready:
            self.state.metrics.rejected.labels("any", "not_ready").inc()
            raise WyomingError("not_ready", "the server is not ready yet (warming up voices); retry shortly")

    def _voice(self, voice: SynthesizeVoice | None) -> VoiceEntry:
        catalog = self.state.catalog
        assert catalog is not None
        entry: VoiceEntry | None
        if voice is None or (voice.name is None and voice.language is None):
            entry = catalog.default
        elif voice.name is not None:
            name = voice.name
            if not isinstance(name, str) or not isinstance(voice.speaker, str | None):
                raise WyomingError("invalid_event", "voice name and speaker must be strings")
            entry = catalog.resolve(f"{name}/{voice.speaker}" if voice.speaker else name)
            if entry is None:
                where = f"{name!r} with speaker {voice.speaker!r}" if voice.speaker else repr(name)
                raise WyomingError(
                    "voice_not_found",
                    f"unknown voice {where}; voices: {', '.join(v.name for v in self.service.voices())} "
                    f"(speakers: {', '.join(catalog.ids)})",
                )
        else:
            language = str(voice.language).replace("-", "_").lower()
            if language.split("_")[0] != LANGUAGE.split("_")[0].lower():
                raise WyomingError("voice_not_found", f"no voice speaks {voice.language!r} (only {LANGUAGE})")
            entry = catalog.default
        if "student" not in entry.voice.models:
            raise WyomingError("model_not_available", f"voice {entry.id!r} has no student model")
        return entry

    async def _speak(self, entry: VoiceEntry, text: str, audio: _Audio) -> None:
        """``text`` through the student pool (the HTTP routes' path), its chunks out as they come."""
        request = SynthesisRequest(text=text, voice=entry.voice.name, speaker=entry.speaker, model="student")
        try:
            job = self.state.pools["student"].submit(request)
        except QueueFull as exc:
            raise WyomingError("queue_full", f"the server is busy ({exc}); retry shortly") from exc
        try:
            while (chunk := await job.next_chunk()) is not None:
                await audio.write(chunk)
        except InputError as exc:
            raise WyomingError("invalid_input", str(exc)) from exc
        except GenerationTimeout as exc:
            raise WyomingError("timeout", f"timed out: {exc}") from exc
        except (asyncio.CancelledError, ConnectionError, OSError):
            job.stop("client_gone")
            raise
        except Exception as exc:
            log.exception("wyoming: the engine failed on a %d-character text", len(text))
            raise WyomingError("server_error", "the engine failed; see the server log") from exc
        finally:
            job.stop("error")  # no-op when complete


# ----------------------------------------------------------------------------------- service


class WyomingService:
    """The Wyoming server of one app: started and stopped by the app's lifespan (service/app.py)."""

    def __init__(self, state: ServiceState, uri: str) -> None:
        self.state = state
        self.uri = uri  # tcp://host:port or unix:///path (validated by Settings.wyoming_uri)
        self.draining = False
        self._server: AsyncServer | None = None
        self._handlers: set[WyomingHandler] = set()
        self._active = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._announcement = Announcement()  # zeroconf (service/wyoming_zeroconf.py)

    @contextlib.contextmanager
    def active(self):
        """Around a synthesis: the drain waits for these."""
        self._active += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._active -= 1
            if self._active == 0:
                self._idle.set()

    def connected(self, handler: WyomingHandler) -> None:
        self._handlers.add(handler)
        self.state.metrics.wyoming_connections.set(len(self._handlers))

    def disconnected(self, handler: WyomingHandler) -> None:
        self._handlers.discard(handler)
        self.state.metrics.wyoming_connections.set(len(self._handlers))

    def voices(self):
        assert self.state.engine is not None
        return list(self.state.engine.voices)

    def info(self) -> Info:
        voices = [
            TtsVoice(
                name=v.name,
                attribution=ATTRIBUTION,
                installed=True,
                description=f"parawave {v.name}: {len(v.speakers)} speaker(s), {v.sample_rate} Hz, "
                "Parallel WaveNet student",
                version=__version__,
                languages=[LANGUAGE],
                speakers=[TtsVoiceSpeaker(name=s) for s in v.speakers],
            )
            for v in self.voices()
            if "student" in v.models
        ]
        program = TtsProgram(
            name="parawave",
            attribution=ATTRIBUTION,
            installed=True,
            description="parawave text to speech (Parallel WaveNet student on ONNX Runtime)",
            version=__version__,
            voices=voices,
            supports_synthesize_streaming=True,
        )
        return Info(tts=[program])

    async def start(self) -> None:
        self._server = AsyncServer.from_uri(self.uri)
        await self._server.start(lambda reader, writer: WyomingHandler(reader, writer, self))
        log.info("Wyoming server on %s", self.uri)
        if self.state.settings.wyoming_zeroconf:
            await self._announcement.announce(self.uri, self.state.settings.wyoming_zeroconf_name)

    async def stop(self) -> None:
        """Drain: no new synthesis (an error event says so), the running ones get the grace period,
        then every connection is closed."""
        self.draining = True
        await self._announcement.withdraw()
        if self._active:
            grace = self.state.settings.graceful_shutdown_s
            log.info("Wyoming: waiting up to %.0f s for %d synthesis to finish", grace, self._active)
            try:
                await asyncio.wait_for(self._idle.wait(), grace)
            except TimeoutError:
                log.warning(
                    "Wyoming: %d synthesis still running after the grace period: stopped", self._active
                )
        if self._server is not None:
            await self._server.stop()
        for handler in list(self._handlers):
            await handler.disconnect()
