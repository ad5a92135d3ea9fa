"""The Wyoming server (Home Assistant's protocol) beside the HTTP one, through the ``wyoming`` package's
own client against a live uvicorn server: describe, synthesize, streaming synthesis, errors, a
disconnect, overload shared with HTTP, drain on shutdown, and the shipped voice heard by ASR.

Every wait is an event (the fake engine's gates, the server's replies) bounded by a timeout."""

from __future__ import annotations

import asyncio
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import pytest
from fake_engine import RATE, FakeEngine, LiveServer, expected_audio, make_settings, wait_for
from wyoming.audio import AudioChunk, AudioStart
from wyoming.client import AsyncTcpClient
from wyoming.error import Error
from wyoming.event import Event
from wyoming.info import Describe, Info
from wyoming.ping import Ping, Pong
from wyoming.tts import (
    Synthesize,
    SynthesizeChunk,
    SynthesizeStart,
    SynthesizeStop,
    SynthesizeVoice,
)

from service.app import create_app
from service.wyoming_text import complete_sentences

TEXT = "The quick brown fox jumps over the lazy dog. It was not amused! Was it, really?"
TIMEOUT = 60.0  # seconds any one await may take before the test fails (never reached when it works)
VOICES = Path(__file__).resolve().parents[2] / "voices"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Wyoming:
    http: LiveServer
    port: int

    def client(self) -> AsyncTcpClient:
        return AsyncTcpClient("127.0.0.1", self.port, connect_timeout=TIMEOUT, read_timeout=TIMEOUT)

    def metrics(self) -> str:
        return httpx.get(f"{self.http.url}/metrics").text


@pytest.fixture
def wyoming_server():
    """wyoming_server(engine, **settings) -> the app on uvicorn with its Wyoming server on a loopback port."""
    servers: list[LiveServer] = []

    def make(engine: FakeEngine | None, **settings) -> Wyoming:
        port = free_port()
        settings = {"wyoming_uri": f"tcp://127.0.0.1:{port}", **settings}
        server = LiveServer(create_app(make_settings(**settings), engine=engine)).start()
        servers.append(server)
        return Wyoming(server, port)

    yield make
    for s in servers:
        s.stop()


@dataclass
class Reply:
    """What the server answered to one request, in order."""

    events: list[Event] = field(default_factory=list)
    closed: bool = False  # the server closed the connection

    @property
    def types(self) -> list[str]:
        return [e.type for e in self.events]

    @property
    def start(self) -> AudioStart:
        (start,) = [AudioStart.from_event(e) for e in self.events if AudioStart.is_type(e.type)]
        return start

    @property
    def chunks(self) -> list[AudioChunk]:
        return [AudioChunk.from_event(e) for e in self.events if AudioChunk.is_type(e.type)]

    @property
    def audio(self) -> np.ndarray:
        pcm = b"".join(c.audio for c in self.chunks)
        return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32767  # (T,)

    @property
    def error(self) -> Error | None:
        errors = [Error.from_event(e) for e in self.events if Error.is_type(e.type)]
        return errors[0] if errors else None


async def read_until(client: AsyncTcpClient, *ends: str, reply: Reply | None = None) -> Reply:
    """Events until one of type ``ends`` (included), an ``error``, or the end of the connection."""
    reply = reply or Reply()
    while True:
        event = await client.read_event()  # bounded by the client's read_timeout
        if event is None:
            reply.closed = True
            return reply
        reply.events.append(event)
        if event.type in ends or Error.is_type(event.type):
            return reply


async def synthesize(server: Wyoming, text: str, voice: SynthesizeVoice | None = None) -> Reply:
    async with server.client() as client:
        await client.write_event(Synthesize(text=text, voice=voice).event())
        reply = await read_until(client, "audio-stop")
        if reply.error is not None:  # the server closes after an error on synthesize
            reply = await read_until(client, reply=reply)
        return reply


def test_describe_lists_the_voices(wyoming_server):
    server = wyoming_server(FakeEngine())

    async def run() -> tuple[Info, Event | None]:
        async with server.client() as client:
            await client.write_event(Describe().event())
            info = Info.from_event(await client.read_event())
            await client.write_event(Ping(text="hi").event())
            return info, await client.read_event()

    info, pong = asyncio.run(run())
    (program,) = info.tts
    assert program.name == "parawave" and program.installed and program.version
    assert program.supports_synthesize_streaming
    assert [(v.name, [s.name for s in v.speakers]) for v in program.voices] == [
        ("fake", ["alpha", "beta"]),
        ("other", ["gamma"]),
    ]
    for voice in program.voices:
        assert voice.languages == ["en_US"] and voice.installed and voice.version
        assert voice.attribution.name == "parawave"
        assert "16000 Hz" in voice.description
    assert Pong.is_type(pong.type) and Pong.from_event(pong).text == "hi"


@pytest.mark.parametrize("rate", [RATE, 22050])
def test_synthesize_sends_16_bit_mono_at_the_voice_rate(wyoming_server, rate):
    engine = FakeEngine(sample_rate=rate)
    server = wyoming_server(engine)
    reply = asyncio.run(synthesize(server, TEXT, SynthesizeVoice(name="fake", speaker="beta")))
    assert reply.types[0] == "audio-start" and reply.types[-1] == "audio-stop", reply.types
    assert (reply.start.rate, reply.start.width, reply.start.channels) == (rate, 2, 1)
    assert all((c.rate, c.width, c.channels) == (rate, 2, 1) for c in reply.chunks)
    np.testing.assert_allclose(reply.audio, expected_audio(TEXT, rate), atol=1e-4)  # sample for sample
    assert len(reply.chunks) > 3  # sentence-sized audio comes in small audio-chunk events
    (call,) = engine.calls
    assert (call.voice, call.speaker, call.model, call.text) == ("fake", "beta", "student", TEXT)
    assert 'parawave_wyoming_requests_total{mode="synthesize",outcome="ok"} 1.0' in server.metrics()


def test_voice_names_resolve_as_the_http_api_does(wyoming_server):
    engine = FakeEngine()
    server = wyoming_server(engine)
    for voice, speaker in [
        (None, "alpha"),  # the default voice
        (SynthesizeVoice(name="gamma"), "gamma"),  # a speaker id
        (SynthesizeVoice(name="other"), "gamma"),  # a bundle: its first speaker
        (SynthesizeVoice(name="fake", speaker="beta"), "beta"),  # bundle + speaker, as Home Assistant sends
        (SynthesizeVoice(language="en_US"), "alpha"),  # a language we speak: the default voice
    ]:
        reply = asyncio.run(synthesize(server, "Hello there.", voice))
        assert reply.error is None, (voice, reply.error)
        assert engine.calls[-1].speaker == speaker, voice


def test_synthesize_streams_the_first_sentence_before_the_rest_exists(wyoming_server):
    hold = threading.Event()
    engine = FakeEngine(hold_after_first=hold)
    server = wyoming_server(engine)
    first = expected_audio("The quick brown fox jumps over the lazy dog.")

    async def run() -> Reply:
        async with server.client() as client:
            await client.write_event(Synthesize(text=TEXT).event())
            reply = Reply()
            while len(reply.audio) < len(first):
                await read_until(client, "audio-chunk", reply=reply)
                assert reply.error is None and not reply.closed
            # the engine is parked after its first sentence: nothing else can have been generated
            assert engine.chunks_made == 1 and not engine.completed
            hold.set()
            return await read_until(client, "audio-stop", reply=reply)

    reply = asyncio.run(run())
    np.testing.assert_allclose(reply.audio, expected_audio(TEXT), atol=1e-4)


def test_streaming_speaks_each_sentence_once_it_is_complete(wyoming_server):
    """Three chunks, each ending mid-sentence (mid-word even): a sentence is spoken as soon as the
    chunk that completes it arrives, before the next chunk is sent; the rest at synthesize-stop."""
    engine = FakeEngine()
    server = wyoming_server(engine)
    chunks = [
        "The first sentence is here. The sec",
        "ond one follows, and Dr. Smith agrees! And the th",
        "ird one ends here. But the last one is cut",
    ]
    spoken = [
        ["The first sentence is here."],
        ["The second one follows, and Dr. Smith agrees!"],
        ["And the third one ends here."],
    ]
    text = "".join(chunks)

    async def run() -> Reply:
        async with server.client() as client:
            await client.write_event(SynthesizeStart(voice=SynthesizeVoice(name="beta")).event())
            reply = Reply()
            for k, (chunk, sentences) in enumerate(zip(chunks, spoken, strict=True)):
                await client.write_event(SynthesizeChunk(text=chunk).event())
                want = len(reply.audio) + len(expected_audio(" ".join(sentences)))
                while len(reply.audio) < want:  # this chunk's sentence is heard before the next chunk
                    await read_until(client, "audio-chunk", reply=reply)
                    assert reply.error is None and not reply.closed, reply.types
                assert [c.text for c in engine.calls] == [s for group in spoken[: k + 1] for s in group]
            # Home Assistant also sends the whole text as a synthesize event for older servers
            await client.write_event(Synthesize(text=text).event())
            await client.write_event(SynthesizeStop().event())
            return await read_until(client, "synthesize-stopped", reply=reply)

    reply = asyncio.run(run())
    assert [c.text for c in engine.calls] == [*(s for g in spoken for s in g), "But the last one is cut"]
    assert reply.types[0] == "audio-start"
    assert reply.types[-2:] == ["audio-stop", "synthesize-stopped"]
    assert reply.types.count("audio-start") == 1 and reply.types.count("audio-stop") == 1
    np.testing.assert_allclose(reply.audio, expected_audio(text), atol=1e-4)
    assert 'parawave_wyoming_requests_total{mode="stream",outcome="ok"} 1.0' in server.metrics()


@pytest.mark.parametrize(
    ("text", "rest"),
    [
        ("Hello there. How are", (["Hello there."], "How are")),
        ("Hello there. How are ", (["Hello there."], "How are ")),  # the space before the next word stays
        ("I met Dr. ", ([], "I met Dr. ")),  # an abbreviation: undecided until the next word
        ("I met Dr. Smith. He", (["I met Dr. Smith."], "He")),
        ("One.\n\nTwo. Thr", (["One.", "Two."], "Thr")),
        ("Is it? yes. No", (["Is it? yes."], "No")),  # "? y": not a break
    ],
)
def test_complete_sentences(text, rest):
    assert complete_sentences(text) == rest


@pytest.mark.parametrize(
    ("request_events", "code"),
    [
        ([Synthesize(text="Hello.", voice=SynthesizeVoice(name="nobody"))], "voice_not_found"),
        ([Synthesize(text="Hello.", voice=SynthesizeVoice(name="fake", speaker="gamma"))], "voice_not_found"),
        ([Synthesize(text="Hello.", voice=SynthesizeVoice(language="de_DE"))], "voice_not_found"),
        ([Synthesize(text="")], "empty_input"),
        ([Synthesize(text="   \n ")], "empty_input"),
        ([Synthesize(text="?!")], "invalid_input"),  # the engine finds nothing to say
        ([Synthesize(text="word " * 30)], "string_above_max_length"),  # max_input_chars=100 below
        ([Event("synthesize", {"voice": {"name": "fake"}})], "invalid_event"),  # no text at all
        ([Event("synthesize", {"text": "Hi.", "voice": {"name": 7}})], "invalid_event"),
    ],
)
def test_bad_synthesize_is_an_error_event_then_the_connection_closes(wyoming_server, request_events, code):
    engine = FakeEngine()
    server = wyoming_server(engine, max_input_chars=100)

    async def run() -> Reply:
        async with server.client() as client:
            for event in request_events:
                await client.write_event(event if isinstance(event, Event) else event.event())
            return await read_until(client, reply=await read_until(client, "audio-stop"))

    reply = asyncio.run(run())
    assert reply.types == ["error"] and reply.closed, reply.types
    assert reply.error.code == code and reply.error.text
    if code != "invalid_input":
        assert engine.calls == []


@pytest.mark.parametrize(
    ("voice", "chunks", "code"),
    [
        (SynthesizeVoice(name="nobody"), ["Hello there. Bye."], "voice_not_found"),
        (None, [], "empty_input"),
        (None, ["  ", "\n"], "empty_input"),
        (None, ["?! ", "..."], "invalid_input"),
    ],
)
def test_bad_stream_is_an_error_event_then_synthesize_stopped(wyoming_server, voice, chunks, code):
    engine = FakeEngine()
    server = wyoming_server(engine)

    async def run() -> Reply:
        async with server.client() as client:
            await client.write_event(SynthesizeStart(voice=voice).event())
            for chunk in chunks:
                await client.write_event(SynthesizeChunk(text=chunk).event())
            await client.write_event(SynthesizeStop().event())
            reply = await read_until(client, "synthesize-stopped")
            return await read_until(client, "synthesize-stopped", reply=reply)  # after the error

    reply = asyncio.run(run())
    assert reply.types == ["error", "synthesize-stopped"], reply.types
    assert reply.error.code == code
    assert f'parawave_wyoming_requests_total{{mode="stream",outcome="{code}"}} 1.0' in server.metrics()


def test_chunk_outside_a_stream_is_an_error_and_the_connection_goes_on(wyoming_server):
    server = wyoming_server(FakeEngine())

    async def run() -> tuple[Reply, Reply]:
        async with server.client() as client:
            await client.write_event(SynthesizeChunk(text="Hello.").event())
            bad = await read_until(client)
            await client.write_event(Describe().event())
            return bad, await read_until(client, "info")

    bad, info = asyncio.run(run())
    assert bad.error.code == "invalid_event"
    assert info.types == ["info"]


@pytest.mark.parametrize("streaming", [False, True])
def test_a_disconnect_mid_stream_stops_generation(wyoming_server, streaming):
    """The engine parks after its first sentence until its cancel flag is set: only the client going
    away can set it, and it then makes no further chunk."""
    engine = FakeEngine(park_after=1)
    server = wyoming_server(engine)
    text = "First sentence is here. Second sentence is here. Third sentence is here. "

    async def run() -> Reply:
        client = server.client()
        await client.connect()
        if streaming:
            await client.write_event(SynthesizeStart().event())
            await client.write_event(SynthesizeChunk(text=text + "And a fourth").event())
        else:
            await client.write_event(Synthesize(text=text).event())
        reply = await read_until(client, "audio-chunk")  # audio is flowing
        assert await asyncio.to_thread(engine.parked.wait, TIMEOUT)
        assert not engine.stopped.is_set()  # still connected: nothing may have stopped it yet
        await client.disconnect()  # mid-stream
        return reply

    reply = asyncio.run(run())
    assert reply.types[0] == "audio-start"
    assert engine.stopped.wait(TIMEOUT), "generation never noticed the disconnect"
    assert not engine.completed and engine.chunks_made == 1
    mode = "stream" if streaming else "synthesize"
    for line in (
        'parawave_cancelled_total{model="student",reason="client_gone"} 1.0',
        'parawave_in_flight{model="student"} 0.0',
        f'parawave_wyoming_requests_total{{mode="{mode}",outcome="client_gone"}} 1.0',
        "parawave_wyoming_connections 0.0",
    ):
        wait_for(lambda line=line: line in server.metrics(), what=line)


def test_16_concurrent_clients_are_answered_or_refused_and_http_shares_the_queue(wyoming_server):
    """Capacity 5 (4 waiting + 1 running): of 16 Wyoming clients 5 are answered, 11 refused with a
    queue_full error event (Wyoming has no 429), none hangs; HTTP sees the same full queue."""
    gate = threading.Event()
    engine = FakeEngine(gate=gate)
    server = wyoming_server(engine, student_queue_size=4, student_workers=1, max_batch=1)
    texts = [f"Client {i} says hello{'!' * (i % 3)} " + "and more words " * (i % 4) for i in range(16)]
    pool = server.http.app.state.parawave.pools["student"]

    async def run() -> list[Reply]:
        tasks = [asyncio.create_task(synthesize(server, t)) for t in texts]
        pending, refused = set(tasks), set()
        while len(refused) < 11:  # the refusals come back while the engine is held
            done, pending = await asyncio.wait(pending, timeout=TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
            assert done, "no refusal arrived"
            refused |= done
        assert len(pending) == 5  # the admitted ones wait on the engine
        assert pool.outstanding == 5
        r = await asyncio.to_thread(
            httpx.post,
            f"{server.http.url}/v1/audio/speech",
            json={"input": "Me too.", "response_format": "pcm"},
        )
        assert r.status_code == 429 and r.json()["error"]["code"] == "queue_full"
        gate.set()
        return list(await asyncio.wait_for(asyncio.gather(*tasks), TIMEOUT))

    replies = asyncio.run(run())
    answered = [(t, r) for t, r in zip(texts, replies, strict=True) if r.error is None]
    refused = [r for r in replies if r.error is not None]
    assert len(answered) == 5 and len(refused) == 11
    for text, r in answered:
        assert r.types[-1] == "audio-stop"
        np.testing.assert_allclose(r.audio, expected_audio(text), atol=1e-4)
    for r in refused:
        assert r.types == ["error"] and r.closed and r.error.code == "queue_full"
    metrics = server.metrics()
    assert 'parawave_rejected_total{model="student",reason="queue_full"} 12.0' in metrics  # 11 + HTTP's
    assert 'parawave_wyoming_requests_total{mode="synthesize",outcome="queue_full"} 11.0' in metrics
    assert 'parawave_wyoming_requests_total{mode="synthesize",outcome="ok"} 5.0' in metrics


def test_shutdown_drains_a_running_synthesis_and_refuses_new_ones(wyoming_server):
    gate = threading.Event()
    engine = FakeEngine(gate=gate)
    server = wyoming_server(engine, shutdown_grace_s=30)
    service = server.http.app.state.wyoming

    async def run() -> tuple[Reply, Reply]:
        running = asyncio.create_task(synthesize(server, TEXT))
        assert await asyncio.to_thread(engine.started.wait, TIMEOUT)
        server.http.server.should_exit = True  # SIGTERM's path: uvicorn drains, then the lifespan ends
        await asyncio.to_thread(wait_for, lambda: service.draining, TIMEOUT, "drain")
        late = await synthesize(server, "Too late.")
        gate.set()
        return await asyncio.wait_for(running, TIMEOUT), late

    running, late = asyncio.run(run())
    assert running.error is None and running.types[-1] == "audio-stop"
    np.testing.assert_allclose(running.audio, expected_audio(TEXT), atol=1e-4)
    assert late.error.code == "shutting_down"


def test_not_ready_is_an_error_event(wyoming_server):
    warm = threading.Event()
    engine = FakeEngine(warmup_gate=warm)
    port = free_port()
    server = LiveServer(create_app(make_settings(wyoming_uri=f"tcp://127.0.0.1:{port}"), engine=engine))
    server._thread.start()
    try:
        wait_for(lambda: server.server.started, what="uvicorn start")
        reply = asyncio.run(synthesize(Wyoming(server, port), "Hello."))
        assert reply.error.code == "not_ready"
        warm.set()
        wait_for(lambda: httpx.get(f"{server.url}/health/ready").status_code == 200, what="ready")
        assert asyncio.run(synthesize(Wyoming(server, port), "Hello.")).error is None
    finally:
        warm.set()
        server.stop()


def test_settings_take_only_uris_the_server_can_listen_on():
    from pydantic import ValidationError

    assert make_settings(wyoming_uri="tcp://0.0.0.0:10200").wyoming_uri == "tcp://0.0.0.0:10200"
    assert make_settings(wyoming_uri="unix:///tmp/p.sock").wyoming_uri == "unix:///tmp/p.sock"
    assert make_settings(wyoming_uri="").wyoming_uri is None
    for bad in ("tcp://0.0.0.0", "http://0.0.0.0:10200", "stdio://", "10200", "tcp://host:notaport"):
        with pytest.raises(ValidationError, match="tcp://host:port"):
            make_settings(wyoming_uri=bad)


def test_zeroconf_announces_the_server(wyoming_server, monkeypatch):
    """Announced over mDNS and heard by a zeroconf browser, both on the loopback interface only (no
    multicast leaves this machine)."""
    zeroconf = pytest.importorskip("zeroconf")
    import zeroconf.asyncio as zc_asyncio

    loopback_only = zc_asyncio.AsyncZeroconf
    monkeypatch.setattr(
        zc_asyncio, "AsyncZeroconf", lambda **kw: loopback_only(**{**kw, "interfaces": ["127.0.0.1"]})
    )
    server = wyoming_server(FakeEngine(), wyoming_zeroconf=True, wyoming_zeroconf_name="parawave-test")
    kind = "_wyoming._tcp.local."
    control = zeroconf.ServiceInfo(kind, f"control.{kind}", port=9, addresses=[socket.inet_aton("127.0.0.1")])
    announcer, browser = (
        zeroconf.Zeroconf(interfaces=["127.0.0.1"]),
        zeroconf.Zeroconf(interfaces=["127.0.0.1"]),
    )
    try:
        announcer.register_service(control)
        if browser.get_service_info(kind, f"control.{kind}", timeout=10000) is None:
            pytest.skip("no multicast on the loopback interface here: no announcement can be heard")
        info = browser.get_service_info(kind, f"parawave-test.{kind}", timeout=10000)
    finally:
        browser.close()
        announcer.close()
    assert info is not None, "the control service was heard, parawave's announcement was not"
    assert info.port == server.port
    assert info.parsed_addresses() == ["127.0.0.1"]


@pytest.mark.skipif(not (VOICES / "flite" / "voice.json").exists(), reason="no shipped voice")
def test_the_shipped_voice_over_wyoming_is_heard_by_asr(wyoming_server):
    """voices/flite on the real engine: synthesize and a streamed synthesis decode at the voice's
    rate, last a plausible time for their words, and pocketsphinx reads them."""
    E = pytest.importorskip("evaluation.metrics")
    server = wyoming_server(None, voices_dir=VOICES, device="cpu", intra_op_threads=1, student_threads=1)
    one = "The weather will be warm and sunny this afternoon."
    two = [
        "Please send me the report before Mon",
        "day morning. She opened the window and looked at the garden.",
    ]
    voice = SynthesizeVoice(name="flite", speaker="rms")

    async def stream() -> Reply:
        async with server.client() as client:
            await client.write_event(SynthesizeStart(voice=voice).event())
            for chunk in two:
                await client.write_event(SynthesizeChunk(text=chunk).event())
            await client.write_event(SynthesizeStop().event())
            return await read_until(client, "synthesize-stopped")

    replies = [asyncio.run(synthesize(server, one, voice)), asyncio.run(stream())]
    texts = [one, "".join(two)]
    hyps = []
    for text, reply in zip(texts, replies, strict=True):
        assert reply.error is None, reply.error
        assert (reply.start.rate, reply.start.width, reply.start.channels) == (16000, 2, 1)
        seconds = len(reply.audio) / 16000
        words = len(text.split())
        assert 0.15 * words < seconds < 0.8 * words + 1.0, (text, seconds)  # ~2-6 words/s
        assert 0.01 < np.abs(reply.audio).max() <= 1.0
        hyps.append(E.transcribe(reply.audio, 16000))
    wer = E.wer_of(texts, hyps)
    assert wer < 0.5, (wer, hyps)


def test_the_ttfa_script_measures_all_three_ways_in(wyoming_server):
    """service/loadtest/wyoming_ttfa.py against a live server: one row per way in, each request real."""
    from typer.testing import CliRunner

    from service.loadtest.wyoming_ttfa import app

    engine = FakeEngine()
    server = wyoming_server(engine)
    args = [
        "--url",
        server.http.url,
        "--wyoming",
        f"tcp://127.0.0.1:{server.port}",
        "--runs",
        "2",
        "--warmup",
        "1",
    ]
    result = CliRunner().invoke(app, [*args, "--text", "Lights on. Now."])
    assert result.exit_code == 0, result.output
    rows = {line.split("  ")[0].strip(): line for line in result.output.splitlines()}
    for way in ("http stream", "wyoming synthesize", "wyoming stream"):
        assert way in rows, result.output
        median, low, high = (float(x) for x in rows[way].split()[-3:])
        assert 0 < low <= median <= high
    # 3 rounds x 3 ways in (the stream's text came in one chunk with its stop: both sentences were
    # waiting when the speaker looked, so they went to the engine together)
    assert [c.text for c in engine.calls] == ["Lights on. Now."] * 9
    assert "machine:" in result.output


def test_a_unix_socket_serves_too(tmp_path):
    from wyoming.client import AsyncUnixClient

    path = tmp_path / "parawave.sock"
    server = LiveServer(create_app(make_settings(wyoming_uri=f"unix://{path}"), engine=FakeEngine())).start()
    try:

        async def run() -> Reply:
            async with AsyncUnixClient(str(path), connect_timeout=TIMEOUT, read_timeout=TIMEOUT) as client:
                await client.write_event(Synthesize(text="Hello there.").event())
                return await read_until(client, "audio-stop")

        reply = asyncio.run(run())
    finally:
        server.stop()
    np.testing.assert_allclose(reply.audio, expected_audio("Hello there."), atol=1e-4)
    assert not path.exists()  # removed when the server stopped
