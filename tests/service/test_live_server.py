"""Through a real uvicorn server on a loopback port: formats, streaming, overload, cancellation,
concurrency without cross-talk, and the OpenAI Python client."""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait

import httpx
import numpy as np
import pytest
import soundfile as sf
from audio_decode import decode
from fake_engine import RATE, FakeEngine, expected_audio, wait_for

from service.audio import available_formats, output_rate

TEXT = "The quick brown fox jumps over the lazy dog. It was not amused! Was it, really?"
SPEECH = "/v1/audio/speech"


@pytest.mark.parametrize("rate", [RATE, 22050])
def test_every_format_decodes(live_server, rate):
    """Each format, whole and streamed: decodes, at the expected rate, with the expected length."""
    server = live_server(FakeEngine(sample_rate=rate))
    expected = expected_audio(TEXT, rate)
    with httpx.Client(base_url=server.url, timeout=30) as http:
        for fmt in available_formats():
            for stream in (False, True):
                r = http.post(SPEECH, json={"input": TEXT, "response_format": fmt, "stream": stream})
                assert r.status_code == 200, (fmt, stream, r.text)
                audio, got = decode(r.content, fmt, int(r.headers["x-sample-rate"]))
                assert got == output_rate(fmt, rate) == int(r.headers["x-sample-rate"]), (fmt, stream)
                n = len(expected) * got / rate
                slack = 1 if fmt in ("wav", "pcm", "flac") else 0.15 * got  # codec delay and padding
                assert n - 1 <= len(audio) <= n + slack, (fmt, stream, len(audio), n)
                if fmt in ("wav", "pcm", "flac"):
                    np.testing.assert_allclose(audio, expected, atol=1e-4)
                if stream:
                    assert "content-length" not in r.headers  # chunked


def test_stream_delivers_the_first_sentence_before_the_rest_exists(live_server):
    hold = threading.Event()
    engine = FakeEngine(hold_after_first=hold)
    server = live_server(engine)
    first_sentence = expected_audio("The quick brown fox jumps over the lazy dog.")
    with (
        httpx.Client(base_url=server.url, timeout=30) as http,
        http.stream("POST", SPEECH, json={"input": TEXT, "response_format": "wav", "stream": True}) as r,
    ):
        assert r.status_code == 200
        assert r.headers["content-type"] == "audio/wav"
        received = b""
        chunks = r.iter_bytes()
        while len(received) < 44 + 2 * len(first_sentence):
            received += next(chunks)
        # the engine is parked after its first sentence: nothing else can have been generated
        assert engine.chunks_made == 1 and not engine.completed
        hold.set()
        received += b"".join(chunks)
    audio, rate = sf.read(io.BytesIO(received), dtype="float32")
    assert rate == RATE
    np.testing.assert_allclose(audio, expected_audio(TEXT), atol=1e-4)


def test_overload_gets_429_and_the_server_stays_healthy(live_server):
    gate = threading.Event()
    engine = FakeEngine(gate=gate)
    # capacity = 1 waiting + 1 worker x batch 1 = 2 requests held at once
    server = live_server(engine, student_queue_size=1, student_workers=1, max_batch=1, retry_after_s=2)

    def call(i: int) -> httpx.Response:
        return httpx.post(
            f"{server.url}{SPEECH}", json={"input": f"Number {i}.", "response_format": "pcm"}, timeout=60
        )

    with ThreadPoolExecutor(5) as pool:
        futures = [pool.submit(call, i) for i in range(5)]
        deadline = time.monotonic() + 30
        while sum(f.done() for f in futures) < 3:  # the rejections come back while the engine is held
            assert time.monotonic() < deadline, "rejections did not arrive"
            wait(futures, timeout=0.1)
        done = [f.result() for f in futures if f.done()]
        assert [r.status_code for r in done] == [429, 429, 429]
        for r in done:
            assert r.headers["retry-after"] == "2"
            assert r.json()["error"]["code"] == "queue_full"
        gate.set()
        results = [f.result() for f in futures]
    assert sorted(r.status_code for r in results) == [200, 200, 429, 429, 429]
    assert httpx.get(f"{server.url}/health/ready").status_code == 200
    r = httpx.post(f"{server.url}{SPEECH}", json={"input": "Still here.", "response_format": "pcm"})
    assert r.status_code == 200 and len(r.content) == 2 * len(expected_audio("Still here."))
    metrics = httpx.get(f"{server.url}/metrics").text
    assert 'parawave_rejected_total{model="student",reason="queue_full"} 3.0' in metrics


def test_teacher_stops_soon_after_the_client_disconnects(live_server):
    """The engine parks after 3 chunks until its cancel flag is set: the disconnect, not the clock,
    is what lets it go on, and it then makes no further chunk."""
    engine = FakeEngine(teacher_chunk=400, park_after=3)
    server = live_server(engine)
    text = "A long reference sentence that goes on and on. " * 18  # ~860 chars, ~8.6 s of audio
    http = httpx.Client(base_url=server.url, timeout=30)
    with http.stream(
        "POST", f"{SPEECH}/reference", json={"input": text, "response_format": "pcm", "stream": True}
    ) as r:
        assert r.status_code == 200
        # Keep the iterator referenced: a generator dropped after one next() is closed at once, and
        # httpcore answers GeneratorExit by closing the connection, a disconnect after one chunk.
        received = r.iter_bytes()
        next(received)  # audio is flowing
        assert engine.parked.wait(60)  # 3 chunks made, waiting on the cancel flag
        assert not engine.stopped.is_set()  # still connected: nothing may have stopped it yet
    http.close()  # the connection goes away mid-stream
    assert engine.stopped.wait(60), "teacher generation never noticed the disconnect"
    assert not engine.completed
    assert engine.chunks_made == 3  # nothing generated after the disconnect
    counted = 'parawave_cancelled_total{model="teacher",reason="client_gone"} 1.0'
    wait_for(lambda: counted in httpx.get(f"{server.url}/metrics").text, what="cancel counted")


def test_32_concurrent_requests_each_get_their_own_audio(live_server):
    gate = threading.Event()
    engine = FakeEngine(gate=gate)
    server = live_server(engine, max_batch=8, max_batch_delay_ms=20)
    texts = [f"Request {i} says hello{'!' * (i % 3)} " + "and more words " * (i % 5) for i in range(32)]

    def call(text: str) -> httpx.Response:
        return httpx.post(
            f"{server.url}{SPEECH}",
            json={"input": text, "response_format": "pcm", "voice": "beta"},
            timeout=60,
        )

    pool_state = server.app.state.parawave.pools["student"]
    with ThreadPoolExecutor(32) as pool:
        futures = [pool.submit(call, t) for t in texts]
        wait_for(lambda: pool_state.outstanding == 32, what="all 32 admitted")
        gate.set()
        responses = [f.result() for f in futures]
    for text, r in zip(texts, responses, strict=True):
        assert r.status_code == 200
        pcm = np.frombuffer(r.content, dtype="<i2").astype(np.float32) / 32767
        np.testing.assert_allclose(pcm, expected_audio(text), atol=1e-4)
    assert sum(engine.batches) == 32
    assert max(engine.batches) == 8  # the waiting requests were batched


def test_openai_client(live_server):
    openai = pytest.importorskip("openai")
    engine = FakeEngine()
    server = live_server(engine, api_key="sk-parawave-test")
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="sk-parawave-test", max_retries=0)
    speech = client.audio.speech.create(model="tts-1", voice="alloy", input="Hello")
    audio, rate = sf.read(io.BytesIO(speech.content), dtype="float32")  # mp3, OpenAI's default
    assert rate == RATE and 0.9 * len(expected_audio("Hello")) <= len(audio)

    text = "Hello there. This one streams."
    with client.audio.speech.with_streaming_response.create(
        model="tts-1", voice="nova", input=text, response_format="wav"
    ) as response:
        data = b"".join(response.iter_bytes())
    audio, rate = sf.read(io.BytesIO(data), dtype="float32")
    np.testing.assert_allclose(audio, expected_audio(text), atol=1e-4)

    for fmt in ("mp3", "opus", "aac", "flac", "wav", "pcm"):  # every format the client can ask for
        speech = client.audio.speech.create(
            model="gpt-4o-mini-tts", voice="coral", input=text, response_format=fmt, instructions="Calm."
        )
        audio, rate = decode(speech.content, fmt, RATE)
        assert rate == output_rate(fmt, RATE) and len(audio) >= 0.9 * len(expected_audio(text)) * rate / RATE

    with client.audio.speech.with_streaming_response.create(
        model="tts-1", voice="alloy", input=text, response_format="pcm", stream_format="sse"
    ) as response:
        events = [json.loads(line[len("data: ") :]) for line in response.iter_lines() if line]
    assert events[-1]["type"] == "speech.audio.done"
    pcm = b"".join(base64.b64decode(e["audio"]) for e in events[:-1])
    np.testing.assert_allclose(np.frombuffer(pcm, "<i2") / 32767, expected_audio(text), atol=1e-4)

    # pitch is a parawave extension: the client sends it with extra_body
    speech = client.audio.speech.create(
        model="tts-1", voice="alloy", input=text, response_format="wav", extra_body={"pitch": 3}
    )
    assert engine.calls[-1].pitch == 3
    audio, rate = sf.read(io.BytesIO(speech.content), dtype="float32")
    np.testing.assert_allclose(audio, expected_audio(text, pitch=3), atol=1e-4)
    with pytest.raises(openai.BadRequestError) as bad:
        client.audio.speech.create(model="tts-1", voice="alloy", input="Hello", extra_body={"pitch": 13})
    assert bad.value.param == "pitch"

    with pytest.raises(openai.BadRequestError) as bad:
        client.audio.speech.create(model="tts-1", voice="nobody", input="Hello")
    assert "Unknown voice" in str(bad.value)

    # our other extras through extra_body; an unknown field is OpenAI's 400, naming it
    client.audio.speech.create(
        model="tts-1",
        voice="alloy",
        input="Hello",
        response_format="wav",
        extra_body={"seed": 4, "normalization_options": {"normalize": False}},
    )
    assert engine.calls[-1].seed == 4 and engine.calls[-1].normalization.normalize is False
    with pytest.raises(openai.BadRequestError) as bad:
        client.audio.speech.create(
            model="tts-1", voice="alloy", input="Hello", extra_body={"temperature": 0.7}
        )
    assert bad.value.param == "temperature"
    assert bad.value.body["message"] == "Unrecognized request argument supplied: temperature"
    wrong = openai.OpenAI(base_url=f"{server.url}/v1", api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        wrong.audio.speech.create(model="tts-1", voice="alloy", input="Hello")


def test_unstreamed_teacher_stops_when_the_client_gives_up(live_server):
    engine = FakeEngine(teacher_chunk=400, park_after=3)  # parked until cancelled: no file can be whole
    server = live_server(engine)
    text = "Another long reference sentence for the teacher. " * 16
    with pytest.raises(httpx.ReadTimeout):  # the client waits 0.3 s for the whole file, then hangs up
        httpx.post(
            f"{server.url}{SPEECH}/reference",
            json={"input": text, "response_format": "wav"},
            timeout=httpx.Timeout(60, read=0.3),
        )
    assert engine.stopped.wait(60), "teacher generation never noticed the disconnect"
    assert not engine.completed
    assert engine.chunks_made <= 3  # (fewer when the client gave up before the engine parked)


def test_teacher_timeout_is_a_504_and_stops_generation(live_server):
    engine = FakeEngine(chunk_delay=0.05, teacher_chunk=400)
    server = live_server(engine, reference_timeout_s=0.3)
    text = "This would take the teacher far too long to finish. " * 4
    r = httpx.post(
        f"{server.url}{SPEECH}/reference", json={"input": text, "response_format": "wav"}, timeout=30
    )
    assert r.status_code == 504
    assert r.json()["error"]["code"] == "timeout"
    assert engine.stopped.wait(10)
    assert not engine.completed


def test_one_bad_text_does_not_fail_its_batch(live_server):
    gate = threading.Event()
    engine = FakeEngine(gate=gate)
    server = live_server(engine, max_batch=4, max_batch_delay_ms=50)
    pool_state = server.app.state.parawave.pools["student"]
    texts = ["Warm up.", "Good one.", "?!", "Also good."]

    def call(text: str) -> httpx.Response:
        return httpx.post(f"{server.url}{SPEECH}", json={"input": text, "response_format": "pcm"}, timeout=60)

    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(call, texts[0])]
        assert engine.started.wait(30)  # the first request holds the engine; the others queue up
        futures += [pool.submit(call, t) for t in texts[1:]]
        wait_for(lambda: pool_state.outstanding == 4, what="all admitted")
        gate.set()
        responses = [f.result() for f in futures]
    assert engine.batches == [1, 3]
    assert [r.status_code for r in responses] == [200, 200, 400, 200]
    assert responses[2].json()["error"]["code"] == "invalid_input"
    for text, r in zip(texts, responses, strict=True):
        if r.status_code == 200:
            assert len(r.content) == 2 * len(expected_audio(text))
