"""The HTTP contract in-process (TestClient): errors in OpenAI's envelope, auth, readiness, metrics, info."""

from __future__ import annotations

import base64
import io
import json
import logging
import threading

import numpy as np
import pytest
import soundfile as sf
from fake_engine import RATE, FakeEngine, expected_audio, wait_for
from prometheus_client.parser import text_string_to_metric_families

from service.settings import Settings, get_settings
from service.types import VoiceInfo

SPEECH = "/v1/audio/speech"


def assert_envelope(response, status: int, *, param: str | None = None, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    err = body["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert isinstance(err["message"], str) and err["message"]
    assert err["param"] == param
    if code is not None:
        assert err["code"] == code
    return err


def wav_audio(response) -> tuple[np.ndarray, int]:
    audio, rate = sf.read(io.BytesIO(response.content), dtype="float32")
    return audio, rate


# -- happy path --------------------------------------------------------------------------------


def test_speech_returns_the_engine_audio(client, engine):
    text = "Hello there. How are you today?"
    r = client.post(SPEECH, json={"model": "tts-1", "input": text, "voice": "beta", "response_format": "wav"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "audio/wav"
    assert r.headers["x-sample-rate"] == str(RATE)
    assert r.headers["x-parawave-model"] == "student"
    audio, rate = wav_audio(r)
    assert rate == RATE
    np.testing.assert_allclose(audio, expected_audio(text), atol=1e-4)
    (call,) = engine.calls
    assert (call.voice, call.speaker, call.model, call.speed) == ("fake", "beta", "student", 1.0)


def test_defaults_follow_openai(client, engine):
    """Only input given: mp3, default voice, student, speed 1."""
    r = client.post(SPEECH, json={"input": "Hi."})
    assert r.status_code == 200
    assert r.headers["content-type"] == "audio/mpeg"
    assert engine.calls[-1].speaker == "alpha" and engine.calls[-1].model == "student"


@pytest.mark.parametrize(
    ("model", "kind"), [("tts-1", "student"), ("tts-1-hd", "teacher"), ("parawave-teacher", "teacher")]
)
def test_model_aliases(client, engine, model, kind):
    r = client.post(SPEECH, json={"model": model, "input": "One. Two.", "response_format": "pcm"})
    assert r.status_code == 200
    assert r.headers["x-parawave-model"] == kind
    assert engine.calls[-1].model == kind
    pcm = np.frombuffer(r.content, dtype="<i2").astype(np.float32) / 32767
    np.testing.assert_allclose(pcm, expected_audio("One. Two."), atol=1e-4)


@pytest.mark.parametrize("stream", [False, True])
def test_sse_stream_format_carries_the_audio_in_delta_events(client, stream):
    """OpenAI's stream_format=sse: speech.audio.delta events whose base64 pieces concatenate to the
    response_format stream, then one speech.audio.done with usage; streamed whatever 'stream' says."""
    text = "One. Two. Three."
    body = {"input": text, "response_format": "pcm", "stream_format": "sse", "stream": stream}
    r = client.post(SPEECH, json=body)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    blocks = [b for b in r.text.split("\n\n") if b.strip()]
    assert all(b.startswith("data: ") for b in blocks), blocks[:3]
    events = [json.loads(b[len("data: ") :]) for b in blocks]
    deltas, done = events[:-1], events[-1]
    assert len(deltas) >= 3 and {e["type"] for e in deltas} == {"speech.audio.delta"}  # one per sentence
    pcm = b"".join(base64.b64decode(e["audio"]) for e in deltas)
    audio = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32767
    expected = expected_audio(text)
    np.testing.assert_allclose(audio, expected, atol=1e-4)
    assert done["type"] == "speech.audio.done"
    frames = round(len(expected) * 100 / RATE)
    assert done["usage"] == {
        "input_tokens": len(text),
        "output_tokens": frames,
        "total_tokens": len(text) + frames,
    }


def test_speed_and_seed_reach_the_engine(client, engine):
    r = client.post(SPEECH, json={"input": "Quick.", "speed": 2.0, "seed": 7, "response_format": "wav"})
    assert r.status_code == 200
    assert (engine.calls[-1].speed, engine.calls[-1].seed) == (2.0, 7)
    audio, _ = wav_audio(r)
    assert len(audio) == len(expected_audio("Quick.", speed=2.0))


def test_pitch_defaults_to_the_voice_own(client, engine):
    r = client.post(SPEECH, json={"input": "Plain.", "response_format": "wav"})
    assert r.status_code == 200
    assert engine.calls[-1].pitch == 0.0
    np.testing.assert_allclose(wav_audio(r)[0], expected_audio("Plain."), atol=1e-4)


@pytest.mark.parametrize("path", [SPEECH, f"{SPEECH}/reference"])
@pytest.mark.parametrize("pitch", [3, -2.5, -12, 12])
def test_pitch_reaches_the_engine(client, engine, path, pitch):
    text = "Higher or lower? Two sentences."
    r = client.post(path, json={"input": text, "pitch": pitch, "response_format": "wav"})
    assert r.status_code == 200, r.text
    call = engine.calls[-1]
    assert (call.pitch, call.model) == (pitch, "teacher" if path.endswith("reference") else "student")
    audio, _ = wav_audio(r)
    np.testing.assert_allclose(audio, expected_audio(text, pitch=pitch), atol=1e-4)
    assert not np.allclose(audio, expected_audio(text), atol=1e-2)  # the fake's tones moved


@pytest.mark.parametrize("path", [SPEECH, f"{SPEECH}/reference"])
@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ("12.5", "less than or equal to 12"),
        ("-13", "greater than or equal to -12"),
        ("-12.001", "greater than or equal to -12"),
        ('"2"', "valid number"),
        ("true", "valid number"),
        ("null", "valid number"),
        ("[3]", "valid number"),
        ("NaN", "finite number"),
        ("Infinity", "finite number"),
        ("-Infinity", "finite number"),
    ],
)
def test_bad_pitch_is_a_400(client, engine, path, raw, says):
    # raw JSON: NaN and Infinity are not JSON, but Python's parser (the server's) takes them
    body = '{"input": "Hi.", "pitch": ' + raw + ', "response_format": "wav"}'
    r = client.post(path, content=body, headers={"content-type": "application/json"})
    err = assert_envelope(r, 400, param="pitch")
    assert err["type"] == "invalid_request_error"
    assert err["message"].startswith("Invalid value for 'pitch'") and says in err["message"]
    assert not engine.calls


def test_reference_endpoint_uses_the_teacher(client, engine):
    r = client.post(
        f"{SPEECH}/reference", json={"model": "tts-1", "input": "Slowly.", "response_format": "wav"}
    )
    assert r.status_code == 200
    assert engine.calls[-1].model == "teacher"
    audio, _ = wav_audio(r)
    np.testing.assert_allclose(audio, expected_audio("Slowly."), atol=1e-4)


def test_voice_object_and_openai_names(client_for):
    engine = FakeEngine([VoiceInfo("flite", RATE, ("rms", "slt", "awb"))])
    client = client_for(engine)
    for voice, speaker in [
        ("alloy", "rms"),
        ("nova", "slt"),
        ("onyx", "rms"),
        ("fable", "awb"),
        ("slt", "slt"),
    ]:
        r = client.post(SPEECH, json={"input": "Hi.", "voice": voice, "response_format": "pcm"})
        assert r.status_code == 200
        assert engine.calls[-1].speaker == speaker
    r = client.post(SPEECH, json={"input": "Hi.", "voice": {"id": "awb"}, "response_format": "pcm"})
    assert r.status_code == 200 and engine.calls[-1].speaker == "awb"
    aliases = client.get("/v1/audio/voices").json()["aliases"]
    assert aliases["nova"] == "slt" and aliases["echo"] == "rms"


def test_openai_names_fall_back_to_the_default_voice(client, engine):
    r = client.post(SPEECH, json={"input": "Hi.", "voice": "shimmer", "response_format": "pcm"})
    assert r.status_code == 200
    assert engine.calls[-1].speaker == "alpha"  # the table's 'slt' is not loaded here


def test_qualified_and_bundle_voice_names(client_for):
    engine = FakeEngine([VoiceInfo("a", RATE, ("x", "y")), VoiceInfo("b", RATE, ("x",))])
    client = client_for(engine)
    ids = [v["id"] for v in client.get("/v1/audio/voices").json()["data"]]
    assert ids == ["a/x", "y", "b/x"]  # 'x' is ambiguous: qualified
    for voice, (bundle, speaker) in [("b/x", ("b", "x")), ("y", ("a", "y")), ("b", ("b", "x"))]:
        r = client.post(SPEECH, json={"input": "Hi.", "voice": voice, "response_format": "pcm"})
        assert r.status_code == 200
        assert (engine.calls[-1].voice, engine.calls[-1].speaker) == (bundle, speaker)


# -- bad input: always 4xx in the envelope -------------------------------------------------------


def test_tts_1_hd_speaks_with_the_model_the_voice_names(client_for):
    """A voice whose export measured its student better (hd_model "student") answers tts-1-hd with the
    student although it ships a teacher; the teacher stays reachable by name and on /reference."""
    engine = FakeEngine([VoiceInfo("fake", 16000, ("alpha",), hd_model="student")])
    client = client_for(engine)
    r = client.post(SPEECH, json={"input": "Hi.", "model": "tts-1-hd", "response_format": "pcm"})
    assert r.status_code == 200, r.text
    assert r.headers["x-parawave-model"] == "student" and engine.calls[-1].model == "student"
    for path, model in [(SPEECH, "parawave-teacher"), (f"{SPEECH}/reference", "tts-1-hd")]:
        r = client.post(path, json={"input": "Hi.", "model": model, "response_format": "pcm"})
        assert r.status_code == 200, r.text
        assert r.headers["x-parawave-model"] == "teacher" and engine.calls[-1].model == "teacher"
    voices = client.get("/v1/audio/voices").json()["data"]
    assert voices[0]["hd_model"] == "parawave-student"


def test_tts_1_hd_falls_back_to_the_student_of_a_voice_without_teacher(client, engine):
    """OpenAI clients send tts-1-hd unasked: the best model the voice has, said in the header."""
    r = client.post(
        SPEECH, json={"input": "Hi.", "voice": "gamma", "model": "tts-1-hd", "response_format": "pcm"}
    )
    assert r.status_code == 200, r.text
    assert r.headers["x-parawave-model"] == "student"
    assert (engine.calls[-1].speaker, engine.calls[-1].model) == ("gamma", "student")
    # the reference endpoint and our own teacher names never fall back
    for path, model in [(f"{SPEECH}/reference", "tts-1-hd"), (SPEECH, "teacher")]:
        r = client.post(path, json={"input": "Hi.", "voice": "gamma", "model": model})
        assert_envelope(r, 400, param="model", code="model_not_available")


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"input": ""}, "input", "empty_input"),
        ({"input": "  \n\t "}, "input", "empty_input"),
        ({"input": "x" * 4097}, "input", "string_above_max_length"),
        ({"input": "Hi.", "voice": "nobody"}, "voice", "voice_not_found"),
        ({"input": "Hi.", "voice": "../../etc/passwd"}, "voice", "voice_not_found"),
        ({"input": "Hi.", "speed": 0}, "speed", None),
        ({"input": "Hi.", "speed": 5}, "speed", None),
        ({"input": "Hi.", "speed": "fast"}, "speed", None),
        ({"input": "Hi.", "pitch": 13}, "pitch", "less_than_equal"),
        ({"input": "Hi.", "pitch": "up"}, "pitch", "float_type"),
        ({"input": "Hi.", "response_format": "ogg"}, "response_format", None),
        ({"input": "Hi.", "model": "gpt-5"}, "model", "model_not_found"),
        ({"input": "Hi.", "stream_format": "events"}, "stream_format", None),
        ({"input": 42}, "input", None),
        ({"voice": "alpha"}, "input", "missing"),
        ({"input": "..."}, "input", "invalid_input"),  # the engine finds nothing to speak
        ({"input": "Hi.", "voice": "gamma", "model": "parawave-teacher"}, "model", "model_not_available"),
    ],
)
def test_bad_bodies(client, body, param, code):
    err = assert_envelope(client.post(SPEECH, json=body), 400, param=param, code=code)
    assert err["type"] == "invalid_request_error"


def test_a_format_this_process_cannot_encode_is_a_400(client, monkeypatch):
    """E.g. aac without PyAV, or mp3 with a libsndfile older than 1.1: refused with the list."""
    from service.routers import speech

    monkeypatch.setattr(speech, "available_formats", lambda: ("flac", "wav", "pcm"))
    r = client.post(SPEECH, json={"input": "Hi.", "response_format": "aac"})
    err = assert_envelope(r, 400, param="response_format", code="unsupported_response_format")
    assert "flac, wav, pcm" in err["message"]


def test_input_at_the_limit_is_accepted_and_one_more_rejected(client_for, engine):
    client = client_for(engine, max_input_chars=20)
    assert client.post(SPEECH, json={"input": "a" * 20, "response_format": "pcm"}).status_code == 200
    err = assert_envelope(client.post(SPEECH, json={"input": "a" * 21}), 400, param="input")
    assert "20" in err["message"]


def test_reference_has_its_own_smaller_limit(client_for, engine):
    client = client_for(engine, reference_max_chars=10)
    assert client.post(SPEECH, json={"input": "a" * 11, "response_format": "pcm"}).status_code == 200
    for path, model in [(f"{SPEECH}/reference", "tts-1"), (SPEECH, "tts-1-hd")]:
        r = client.post(path, json={"input": "a" * 11, "model": model})
        assert_envelope(r, 400, param="input", code="string_above_max_length")


def test_malformed_json(client):
    r = client.post(SPEECH, content=b'{"input": "Hi.",', headers={"content-type": "application/json"})
    assert_envelope(r, 400, code="invalid_json")


@pytest.mark.parametrize("body", [b"[1, 2]", b'"text"', b"null"])
def test_json_that_is_not_an_object(client, body):
    r = client.post(SPEECH, content=body, headers={"content-type": "application/json"})
    assert_envelope(r, 400)


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"]
)
def test_wrong_content_type(client, content_type):
    r = client.post(SPEECH, content=b"input=Hi", headers={"content-type": content_type})
    assert_envelope(r, 415, code="unsupported_media_type")


def test_huge_body_rejected_before_reading(client_for, engine):
    client = client_for(engine, max_body_bytes=2048)
    r = client.post(SPEECH, content=b"x" * 5000, headers={"content-type": "application/json"})
    assert_envelope(r, 413, code="payload_too_large")
    assert not engine.calls


def test_huge_chunked_body_rejected_while_reading(client_for, engine):
    client = client_for(engine, max_body_bytes=2048)

    def body():
        for _ in range(10):
            yield b"x" * 1000

    r = client.post(SPEECH, content=body(), headers={"content-type": "application/json"})
    assert "content-length" not in r.request.headers
    assert_envelope(r, 413, code="payload_too_large")


def test_not_found_and_method_not_allowed(client):
    assert_envelope(client.get("/v1/nothing"), 404, code="not_found")
    err = assert_envelope(client.get(SPEECH), 405, code="method_not_allowed")
    assert "GET" in err["message"]


def test_engine_crash_is_a_500_without_internals(client, caplog):
    with caplog.at_level(logging.ERROR, logger="service"):
        r = client.post(SPEECH, json={"input": "CRASH please."})
    err = assert_envelope(r, 500)
    assert err["type"] == "server_error"
    assert "secret internals" not in r.text and "Traceback" not in r.text
    assert any("secret internals" in (rec.exc_text or "") for rec in caplog.records)  # logged with traceback


# -- auth, readiness, CORS ------------------------------------------------------------------------


def test_api_key(client_for, engine):
    client = client_for(engine, api_key="s3cret")
    r = client.post(SPEECH, json={"input": "Hi."})
    assert_envelope(r, 401, code="missing_api_key")
    assert r.headers["www-authenticate"] == "Bearer"
    r = client.post(SPEECH, json={"input": "Hi."}, headers={"Authorization": "Bearer nope"})
    assert_envelope(r, 401, code="invalid_api_key")
    assert_envelope(client.get("/v1/models"), 401, code="missing_api_key")
    assert not engine.calls
    ok = {"Authorization": "Bearer s3cret"}
    assert client.post(SPEECH, json={"input": "Hi."}, headers=ok).status_code == 200
    assert client.get("/v1/audio/voices", headers=ok).status_code == 200
    for path in ("/health/live", "/health/ready", "/metrics", "/"):  # open for probes and the page
        assert client.get(path).status_code == 200


def test_ready_only_after_warmup(client_for):
    gate = threading.Event()
    engine = FakeEngine(warmup_gate=gate)
    client = client_for(engine, wait_ready=False, retry_after_s=3)
    assert client.get("/health/live").status_code == 200
    r = client.get("/health/ready")
    assert_envelope(r, 503, code="not_ready")
    assert r.headers["retry-after"] == "3"
    r = client.post(SPEECH, json={"input": "Hi."})
    assert_envelope(r, 503, code="not_ready")
    assert r.headers["retry-after"] == "3"
    assert client.get("/v1/audio/voices").status_code == 200  # loaded, just not warm
    gate.set()
    wait_for(lambda: client.get("/health/ready").status_code == 200, what="ready after warm-up")
    assert engine.warmed.is_set()
    assert client.get("/health/ready").json()["status"] == "ready"
    assert client.post(SPEECH, json={"input": "Hi."}).status_code == 200


def test_cors(client_for, engine):
    client = client_for(engine, cors_origins=["http://page.example"])
    r = client.options(
        SPEECH,
        headers={
            "Origin": "http://page.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,authorization",
        },
    )
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == "http://page.example"
    r = client.post(SPEECH, json={"input": "Hi."}, headers={"Origin": "http://page.example"})
    assert r.headers["access-control-allow-origin"] == "http://page.example"
    assert "x-sample-rate" in r.headers["access-control-expose-headers"].lower()
    r = client.get("/health/live", headers={"Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in r.headers


# -- info, metrics, page ----------------------------------------------------------------------


def test_voices_and_models(client):
    voices = client.get("/v1/audio/voices").json()
    assert voices["default"] == "alpha"
    assert [v["id"] for v in voices["data"]] == ["alpha", "beta", "gamma"]
    assert voices["data"][2]["models"] == ["parawave-student"]
    assert [v["hd_model"] for v in voices["data"]] == ["parawave-teacher"] * 2 + ["parawave-student"]
    models = client.get("/v1/models").json()
    assert models["object"] == "list"
    by_id = {m["id"]: m for m in models["data"]}
    assert set(by_id) == {"parawave-student", "parawave-teacher"}
    assert by_id["parawave-student"]["provider"] == "FakeExecutionProvider"
    assert "tts-1" in by_id["parawave-student"]["aliases"]
    assert "tts-1-hd" in by_id["parawave-teacher"]["aliases"]


def test_default_voice_setting(client_for, engine):
    client = client_for(engine, default_voice="beta")
    assert client.get("/v1/audio/voices").json()["default"] == "beta"
    client.post(SPEECH, json={"input": "Hi."})
    assert engine.calls[-1].speaker == "beta"


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics(client):
    client.post(SPEECH, json={"input": "One. Two. Three.", "response_format": "wav"})
    client.post(SPEECH, json={"input": ""})
    m = _samples(client.get("/metrics").text)
    route = ("route", "/v1/audio/speech")
    assert m[("parawave_requests_total", (("method", "POST"), route, ("status", "200")))] == 1
    assert m[("parawave_requests_total", (("method", "POST"), route, ("status", "400")))] == 1
    student = (("model", "student"),)
    assert m[("parawave_audio_seconds_total", student)] == pytest.approx(
        len(expected_audio("One. Two. Three.")) / RATE
    )
    for name in (
        "parawave_time_to_first_audio_seconds_count",
        "parawave_queue_seconds_count",
        "parawave_inference_seconds_count",
        "parawave_real_time_factor_count",
    ):
        assert m[(name, student)] == 1, name
    assert m[("parawave_queue_depth", student)] == 0
    assert m[("parawave_ready", ())] == 1


def test_web_page_is_self_contained(client):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    page = r.text
    for needle in ("<textarea", 'id="voice"', 'id="speed"', 'value="teacher"', "<audio", "download", "RTF"):
        assert needle in page
    assert 'id="pitch" type="number" min="-12" max="12"' in page
    assert "http://" not in page and "https://" not in page  # no CDN, nothing external


def test_openapi_schema(client):
    schema = client.get("/openapi.json").json()
    assert "/v1/audio/speech" in schema["paths"] and "/v1/audio/speech/reference" in schema["paths"]
    body = schema["components"]["schemas"]["SpeechBody"]["properties"]
    assert set(body) >= {"model", "input", "voice", "response_format", "speed", "pitch", "stream"}


# -- settings ------------------------------------------------------------------------------------


def test_settings_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("PARAWAVE_MAX_INPUT_CHARS", "100")
    monkeypatch.setenv("PARAWAVE_CORS_ORIGINS", "http://a.example, http://b.example")
    monkeypatch.setenv("PARAWAVE_VOICES_DIR", str(tmp_path))
    monkeypatch.setenv("PARAWAVE_API_KEY", "zq-secret-9")
    s = Settings(_env_file=None)
    assert s.max_input_chars == 100
    assert s.cors_origins == ["http://a.example", "http://b.example"]
    assert s.voices_dir == tmp_path
    assert (
        s.api_key is not None
        and s.api_key.get_secret_value() == "zq-secret-9"
        and "zq-secret-9" not in repr(s)
    )
    get_settings.cache_clear()
    try:
        assert get_settings() is get_settings()
        assert get_settings().max_input_chars == 100
    finally:
        get_settings.cache_clear()


def test_settings_from_dotenv(tmp_path):
    env = tmp_path / ".env"
    env.write_text("PARAWAVE_MAX_BATCH=3\nPARAWAVE_DEVICE=cpu\n")
    s = Settings(_env_file=env)
    assert (s.max_batch, s.device) == (3, "cpu")


def test_the_fake_follows_the_engine_protocol(engine):
    from service.types import SpeechEngine, SynthesisRequest

    assert isinstance(engine, SpeechEngine)
    chunks = list(engine.synthesize(SynthesisRequest("One. Two!", "fake", "alpha", model="teacher")))
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert [c.is_last for c in chunks] == [False] * (len(chunks) - 1) + [True]
    assert {c.span for c in chunks} == {(0, 4), (5, 9)}


def test_max_batch_defaults_by_provider():
    from service.state import GPU_MAX_BATCH, resolve_max_batch

    assert resolve_max_batch(None, "CPUExecutionProvider") == 1
    assert resolve_max_batch(None, "CUDAExecutionProvider") == GPU_MAX_BATCH
    assert resolve_max_batch(3, "CPUExecutionProvider") == 3
    assert resolve_max_batch(1, "CUDAExecutionProvider") == 1
