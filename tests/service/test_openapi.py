"""The published OpenAPI schema is true to the server (what test_schema_fuzz.py generates from), and
the bugs that fuzzing and probing found stay fixed."""

from __future__ import annotations

from pathlib import Path

import pytest
from fake_engine import FakeEngine, make_settings, wait_for
from fastapi.testclient import TestClient
from test_http_api import SPEECH, assert_envelope

from core.limits import MAX_SEED
from service.app import create_app
from service.audio import available_formats
from service.catalog import MODEL_ALIASES
from service.types import VoiceInfo

VOICES = Path(__file__).resolve().parents[1] / "fixtures" / "voices"


def test_speech_body_and_errors_are_documented(client_for):
    client = client_for(FakeEngine(), max_input_chars=300)
    schema = client.get("/openapi.json").json()
    for path in (SPEECH, f"{SPEECH}/reference"):
        operation = schema["paths"][path]["post"]
        assert operation["requestBody"]["required"] is True
        ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        assert ref == "#/components/schemas/SpeechBody"
        responses = operation["responses"]
        assert "422" not in responses  # validation errors are 400s in the envelope
        assert set(responses["200"]["content"]) == {
            "audio/mpeg",
            "audio/ogg",
            "audio/aac",
            "audio/flac",
            "audio/wav",
            "audio/pcm",
            "text/event-stream",
        }
        for status in ("400", "401", "413", "415", "429", "500", "503", "504"):
            error = responses[status]["content"]["application/json"]["schema"]
            assert error["required"] == ["error"]
            assert error["properties"]["error"]["required"] == ["message", "type", "param", "code"]
    components = schema["components"]["schemas"]
    assert "HTTPValidationError" not in components and "ValidationError" not in components
    body = components["SpeechBody"]
    assert body["required"] == ["input"]
    props = body["properties"]
    assert props["input"]["minLength"] == 1 and props["input"]["maxLength"] == 300
    assert props["model"]["enum"] == list(MODEL_ALIASES)
    assert props["response_format"]["enum"] == list(available_formats())
    assert props["stream_format"]["enum"] == ["audio", "sse"]
    assert props["speed"]["minimum"] == 0.25 and props["speed"]["maximum"] == 4.0
    pitch = props["pitch"]
    assert (pitch["type"], pitch["minimum"], pitch["maximum"], pitch["default"]) == ("number", -12, 12, 0)
    assert "semitones" in pitch["description"] and "extra_body" in pitch["description"]
    assert "pitch" not in body["required"]
    assert props["seed"]["anyOf"][0] == {"type": "integer", "minimum": 0, "maximum": MAX_SEED}
    # the loaded voices: ids, qualified names, bundle names and OpenAI names
    names = next(o for o in props["voice"]["anyOf"] if o.get("type") == "string")["enum"]
    assert names[:3] == ["alpha", "beta", "gamma"]
    assert {"fake/beta", "other/gamma", "fake", "other", "alloy", "nova"} <= set(names)
    assert components["VoiceRef"]["properties"]["id"]["enum"] == names


def test_every_documented_voice_name_is_accepted(client_for, engine):
    client = client_for(engine)
    names = client.get("/openapi.json").json()["components"]["schemas"]["VoiceRef"]["properties"]["id"][
        "enum"
    ]
    for name in names:
        r = client.post(SPEECH, json={"input": "Hi.", "voice": name, "response_format": "pcm"})
        assert r.status_code == 200, (name, r.text)


def test_schema_without_a_loaded_engine_has_no_voice_list():
    app = create_app(make_settings(), engine=FakeEngine([VoiceInfo("v", 16000, ("a",))]))
    voice = app.openapi()["components"]["schemas"]["SpeechBody"]["properties"]["voice"]
    assert {"type": "string"} in voice["anyOf"]  # lifespan not run: no catalog yet, plain strings


@pytest.fixture(scope="module")
def onnx_client():
    app = create_app(make_settings(voices_dir=VOICES, device="cpu"))
    with TestClient(app, raise_server_exceptions=False) as client:
        wait_for(lambda: client.get("/health/ready").status_code == 200, what="ready")
        yield client


@pytest.mark.parametrize("seed", [-1, -(2**70), MAX_SEED + 1])
def test_out_of_range_seed_is_a_400_not_a_crash(onnx_client, seed):
    # was a 500: numpy's default_rng raises on a negative seed, deep inside the real engine
    for path in (SPEECH, f"{SPEECH}/reference"):
        r = onnx_client.post(path, json={"input": "Hi.", "seed": seed})
        assert_envelope(r, 400, param="seed")


def test_largest_seed_is_accepted(onnx_client):
    r = onnx_client.post(SPEECH, json={"input": "Hi.", "seed": MAX_SEED, "response_format": "pcm"})
    assert r.status_code == 200 and len(r.content) > 0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("seed", False),
        ("seed", "7"),
        ("seed", 1.5),
        ("speed", "1.0"),
        ("speed", True),
        ("pitch", "2"),
        ("pitch", True),
        ("stream", "yes"),
        ("stream", 1),
    ],
)
def test_values_of_the_wrong_type_are_not_coerced(client, engine, field, value):
    # the schema says integer/number/boolean: a request that breaks it is refused, not reinterpreted
    r = client.post(SPEECH, json={"input": "Hi.", field: value})
    assert_envelope(r, 400, param=field)
    assert not engine.calls


@pytest.mark.parametrize("path", [SPEECH, f"{SPEECH}/reference"])
def test_lone_surrogates_in_the_input_are_a_400(client, engine, path):
    # JSON escapes can carry text that is not Unicode; it crashed engines that encode the text (500)
    body = b'{"input": "Hi \\ud800 there.", "stream": true}'
    r = client.post(path, content=body, headers={"content-type": "application/json"})
    err = assert_envelope(r, 400, param="input")
    assert "surrogate" in err["message"]
    assert not engine.calls
    ok = client.post(path, json={"input": "Hi \U0001f600 there.", "response_format": "pcm"})  # astral: fine
    assert ok.status_code == 200
