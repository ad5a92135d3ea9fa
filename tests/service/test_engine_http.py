"""The HTTP service on the real ONNX Runtime engine and the committed tiny bundle (the rest of the
HTTP contract is tested with the fake engine)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from fake_engine import make_settings, wait_for
from fastapi.testclient import TestClient

from service.app import create_app

VOICES = Path(__file__).resolve().parents[1] / "fixtures" / "voices"


@pytest.fixture(scope="module")
def client():
    # no engine passed: the app's lifespan loads it with the default loader (service.loading.load_engine)
    app = create_app(make_settings(voices_dir=VOICES, device="cpu", max_batch=4))
    with TestClient(app, raise_server_exceptions=False) as c:
        wait_for(lambda: c.get("/health/ready").status_code == 200, what="ready")
        yield c


def test_speech_wav_decodes_at_the_bundle_rate(client):
    r = client.post(
        "/v1/audio/speech",
        json={"input": "Hello there. How are you?", "voice": "beta", "response_format": "wav", "seed": 1},
    )
    assert r.status_code == 200, r.text
    assert r.headers["x-sample-rate"] == "16000"
    audio, rate = sf.read(io.BytesIO(r.content), dtype="float32")
    assert rate == 16000
    assert audio.ndim == 1 and audio.size > 0 and audio.size % 200 == 0
    assert np.abs(audio).max() > 0
    again = client.post(
        "/v1/audio/speech",
        json={"input": "Hello there. How are you?", "voice": "beta", "response_format": "wav", "seed": 1},
    )
    assert again.content == r.content


def test_reference_endpoint_runs_the_teacher(client):
    r = client.post(
        "/v1/audio/speech/reference",
        json={"input": "Hi.", "voice": "alpha", "response_format": "pcm", "seed": 2},
    )
    assert r.status_code == 200, r.text
    assert r.headers["x-parawave-model"] == "teacher"
    pcm = np.frombuffer(r.content, dtype="<i2")
    assert pcm.size > 0 and pcm.size % 200 == 0


def test_streamed_student_response(client):
    with client.stream(
        "POST",
        "/v1/audio/speech",
        json={"input": "One. Two. Three.", "response_format": "pcm", "stream": True},
    ) as r:
        assert r.status_code == 200
        body = b"".join(r.iter_bytes())
    assert len(body) > 0 and len(body) % 400 == 0  # 16-bit samples, whole frames


def test_unspeakable_input_is_a_400(client):
    r = client.post("/v1/audio/speech", json={"input": "...", "response_format": "wav"})
    assert r.status_code == 400
    assert "nothing to speak" in r.json()["error"]["message"]


def test_models_and_voices_show_the_cpu_provider(client):
    models = client.get("/v1/models").json()["data"]
    assert {m["id"]: m["provider"] for m in models} == {
        "parawave-student": "CPUExecutionProvider",
        "parawave-teacher": "CPUExecutionProvider",
    }
    voices = client.get("/v1/audio/voices").json()
    assert [v["id"] for v in voices["data"]] == ["alpha", "beta"]
    assert voices["default"] == "alpha"
