"""Strict request fields, normalization options and markup errors over HTTP (fake engine)."""

from __future__ import annotations

import pytest
from test_http_api import SPEECH, assert_envelope

from model.text.normalize import NormalizationOptions


@pytest.mark.parametrize("path", [SPEECH, SPEECH + "/reference"])
def test_unknown_fields_get_openais_400(client, path):
    r = client.post(path, json={"input": "Hi.", "voice": "alpha", "temperature": 0.5})
    err = assert_envelope(r, 400, param="temperature")
    assert err["message"] == "Unrecognized request argument supplied: temperature"
    assert err["type"] == "invalid_request_error"
    r = client.post(path, json={"input": "Hi.", "voice": "alpha", "foo": 1, "bar": 2})
    err = assert_envelope(r, 400, param="foo")
    assert err["message"] == "Unrecognized request arguments supplied: foo, bar"
    r = client.post(path, json={"input": "Hi.", "normalization_options": {"normalise": False}})
    err = assert_envelope(r, 400, param="normalization_options.normalise")
    assert err["message"] == "Unrecognized request argument supplied: normalization_options.normalise"


def test_our_extras_and_openais_fields_are_accepted(client, engine):
    body = {
        "model": "tts-1",
        "input": "Hi.",
        "voice": "alpha",
        "response_format": "wav",
        "speed": 1.0,
        "instructions": "Calm.",
        "stream_format": "audio",
        "stream": False,
        "seed": 3,
        "pitch": 1.0,
        "normalization_options": {"normalize": False, "phone_normalization": False},
    }
    assert client.post(SPEECH, json=body).status_code == 200
    call = engine.calls[-1]
    assert call.normalization == NormalizationOptions(normalize=False, phone_normalization=False)
    client.post(SPEECH, json={"input": "Hi.", "response_format": "wav"})
    assert engine.calls[-1].normalization is None


def test_normalization_options_are_typed(client):
    r = client.post(SPEECH, json={"input": "Hi.", "normalization_options": {"normalize": "no"}})
    assert_envelope(r, 400, param="normalization_options.normalize")
    r = client.post(SPEECH, json={"input": "Hi.", "normalization_options": ["normalize"]})
    assert_envelope(r, 400, param="normalization_options")


@pytest.mark.parametrize("path", [SPEECH, SPEECH + "/reference"])
@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    "text, code, where",
    [
        ("<speak>Hi <b>x</b></speak>", "invalid_ssml", "unsupported tag <b>"),
        ("<speak>Hi <break/>", "invalid_ssml", "not well-formed XML"),
        (
            '<!DOCTYPE s [<!ENTITY a "aaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]><speak>&b;&b;</speak>',
            "invalid_ssml",
            "DTDForbidden",
        ),
        ("Say [x](/abc and go", "invalid_markup", "unclosed inline phonemes"),
    ],
)
def test_bad_markup_is_a_400_that_says_where(client, engine, path, stream, text, code, where):
    r = client.post(path, json={"input": text, "voice": "alpha", "stream": stream})
    err = assert_envelope(r, 400, param="input", code=code)
    assert where in err["message"] and "at character" in err["message"]
    assert not engine.calls  # refused before any work was queued


def test_oversized_ssml_is_rejected(client_for, engine):
    client = client_for(engine, max_input_chars=200, reference_max_chars=100)
    text = "<speak>" + "<s>word</s>" * 30 + "</speak>"
    err = assert_envelope(
        client.post(SPEECH, json={"input": text}), 400, param="input", code="string_above_max_length"
    )
    assert "at most 200" in err["message"]
    deep = "<speak>" + "<s>" * 17 + "x" + "</s>" * 17 + "</speak>"
    err = assert_envelope(client.post(SPEECH, json={"input": deep}), 400, param="input", code="invalid_ssml")
    assert "nested deeper than 16" in err["message"]


def test_plain_text_with_angle_brackets_is_not_ssml(client, engine):
    for text in ("if 3 < 4 then <b>bold</b>.", "hi <speak>x</speak>", "<speaker> said hi."):
        r = client.post(SPEECH, json={"input": text, "response_format": "wav"})
        assert r.status_code == 200, r.text
        assert engine.calls[-1].text == text
