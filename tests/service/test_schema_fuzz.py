"""Property-based run over the OpenAPI schema (schemathesis + Hypothesis) against a real uvicorn server.

Every operation of the schema the server publishes (``GET /openapi.json``, with the loaded voice names;
built up front for pytest's parametrization and checked equal to the live server's: schemathesis'
fixture-based loader does not work with pytest 9) gets generated requests: schema-valid and schema-breaking ones, boundary values
(schemathesis' coverage phase) and random ones (its fuzzing phase, derandomized so a CI run is
repeatable). Every response must be: never a 5xx; documented (status, content type, body schema);
an error body in OpenAI's envelope; a 4xx for a request the schema forbids. Once with the fake
engine (more examples, fast) and once with the real ONNX engine on the tiny fixture bundle (fewer
examples, small input limits so each synthesis stays short).
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import httpx
import hypothesis
import pytest
import schemathesis
from fake_engine import FakeEngine, LiveServer, make_settings
from fastapi.testclient import TestClient
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from service.app import create_app
from service.types import VoiceInfo

log = logging.getLogger(__name__)
VOICES = Path(__file__).resolve().parents[1] / "fixtures" / "voices"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
SPEECH_PATHS = ("/v1/audio/speech", "/v1/audio/speech/reference", "/v1/audio/speech/captioned")


FAKE_SETTINGS: dict = {}
# small input limits keep each real generation (the teacher runs sample by sample) short
ONNX_SETTINGS = {"voices_dir": VOICES, "device": "cpu", "max_input_chars": 200, "reference_max_chars": 24}
TINY_VOICES = [
    VoiceInfo("tiny", 16000, ("alpha", "beta"), blendable=True)
]  # what tests/fixtures/voices holds


def _published(settings: dict, voices: list[VoiceInfo] | None = None) -> dict:
    """``GET /openapi.json`` of an app with these settings and voices (the schema depends on nothing else)."""
    with TestClient(create_app(make_settings(**settings), engine=FakeEngine(voices))) as client:
        return client.get("/openapi.json").json()


def _schema(published: dict):
    schema = schemathesis.openapi.from_dict(published)
    schema.config.generation.update(modes=list(GenerationMode))  # valid and schema-breaking requests
    return schema


FAKE_PUBLISHED = _published(FAKE_SETTINGS)
ONNX_PUBLISHED = _published(ONNX_SETTINGS, TINY_VOICES)
FAKE = _schema(FAKE_PUBLISHED)
ONNX = _schema(ONNX_PUBLISHED)


class Run:
    """A live server and what the generated requests got (status counts per operation and mode)."""

    def __init__(self, server: LiveServer) -> None:
        self.server = server
        self.statuses: Counter[tuple[str, str, int]] = Counter()

    def check(self, case) -> None:
        response = case.call(base_url=self.server.url, timeout=60)  # headers: lowercase name -> values
        mode = case.meta.generation.mode.value if case.meta else "explicit"
        self.statuses[(case.operation.path, mode, response.status_code)] += 1
        assert response.status_code < 500, (case.method, case.path, case.body, response.text[:300])
        if response.status_code >= 400:
            assert response.headers["content-type"][0].startswith("application/json")
            body = response.json()
            assert set(body) == {"error"}, body
            error = body["error"]
            assert set(error) == {"message", "type", "param", "code"}, error
            assert isinstance(error["message"], str) and error["message"], error
            assert error["type"] in ("invalid_request_error", "authentication_error", "rate_limit_error")
            assert error["param"] is None or isinstance(error["param"], str)
            assert error["code"] is None or isinstance(error["code"], str)
        elif case.operation.path in SPEECH_PATHS:
            assert response.status_code == 200
            assert len(response.content) > 0 and int(response.headers["x-sample-rate"][0]) > 0
        case.validate_response(response, checks=CHECKS)

    def assert_meaningful(self, min_spoken: int) -> None:
        """The generated bodies reached the engine: the schema describes what the server takes."""
        log.info("schema fuzz against %s: %s", self.server.url, sorted(self.statuses.items()))
        for path in SPEECH_PATHS:
            ran = sum(n for (p, _, _), n in self.statuses.items() if p == path)
            if not ran:  # this operation was deselected
                continue
            spoken = self.statuses[(path, "positive", 200)]
            assert spoken >= min_spoken, (path, dict(self.statuses))
            assert self.statuses[(path, "negative", 400)] > 0, (path, dict(self.statuses))


@pytest.fixture(scope="module")
def fake_run():
    server = LiveServer(create_app(make_settings(**FAKE_SETTINGS), engine=FakeEngine())).start()
    assert httpx.get(f"{server.url}/openapi.json").json() == FAKE_PUBLISHED
    run = Run(server)
    yield run
    server.stop()
    run.assert_meaningful(min_spoken=20)


@pytest.fixture(scope="module")
def onnx_run():
    # no engine passed: the lifespan loads the fixture bundle with the real ONNX Runtime engine
    server = LiveServer(create_app(make_settings(**ONNX_SETTINGS))).start()
    assert httpx.get(f"{server.url}/openapi.json").json() == ONNX_PUBLISHED  # fuzzing its own schema
    run = Run(server)
    yield run
    server.stop()
    run.assert_meaningful(min_spoken=5)


SETTINGS = {"derandomize": True, "database": None, "deadline": None, "print_blob": True}


@FAKE.parametrize()
@hypothesis.settings(max_examples=50, **SETTINGS)
def test_fake_engine_api_never_5xx(case, fake_run):
    fake_run.check(case)


@ONNX.parametrize()
@hypothesis.settings(max_examples=12, **SETTINGS)
def test_onnx_engine_api_never_5xx(case, onnx_run):
    onnx_run.check(case)
