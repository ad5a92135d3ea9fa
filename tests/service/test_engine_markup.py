"""The ONNX engine on markup: SSML breaks and prosody as per-row inputs and silences, lexicons loaded
with the voice, inline phonemes (tiny fixture bundle; one test on the shipped voice)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from fake_engine import make_settings, wait_for
from fastapi.testclient import TestClient

from model.text.normalize import NormalizationOptions
from service.app import create_app
from service.loading import load_engine
from service.types import EngineLoadError, InputError, SynthesisRequest

ROOT = Path(__file__).resolve().parents[2]
VOICES = ROOT / "tests" / "fixtures" / "voices"
SHIPPED = ROOT / "voices"
RATE = 16000


@pytest.fixture(scope="module")
def engine():
    return load_engine(VOICES, device="cpu", require_cuda=False, teacher_frames_per_call=4)


def chunks(engine, text, model="student", **kw):
    request = SynthesisRequest(text=text, voice="tiny", speaker="alpha", model=model, seed=7, **kw)
    return list(engine.synthesize(request))


def test_break_inserts_exact_silence_between_the_same_sentences(engine):
    plain = chunks(engine, "Hi there. Good day.")
    ssml = chunks(engine, '<speak>Hi there. <break time="250ms"/>Good day.<break strength="weak"/></speak>')
    assert len(plain) == len(ssml) == 2
    np.testing.assert_array_equal(ssml[0].audio, plain[0].audio)
    np.testing.assert_array_equal(ssml[1].audio[:4000], np.zeros(4000, np.float32))  # 250 ms at 16 kHz
    np.testing.assert_array_equal(ssml[1].audio[4000:-3200], plain[1].audio)
    np.testing.assert_array_equal(ssml[1].audio[-3200:], np.zeros(3200, np.float32))  # weak: 200 ms
    assert ssml[1].is_last and ssml[1].text == "Good day."


def test_prosody_is_the_rows_speed_and_pitch(engine):
    slow = chunks(engine, '<speak><prosody rate="50%" pitch="+2st">Slow words here.</prosody></speak>')
    ref = chunks(engine, "Slow words here.", speed=0.5, pitch=2.0)
    normal = chunks(engine, "Slow words here.")
    np.testing.assert_array_equal(slow[0].audio, ref[0].audio)
    assert len(slow[0].audio) > 1.6 * len(normal[0].audio)
    # the request's speed and pitch apply on top of the markup's
    both = chunks(engine, '<speak><prosody rate="x-fast">Go.</prosody></speak>', speed=2.0)
    np.testing.assert_array_equal(both[0].audio, chunks(engine, "Go.", speed=3.5)[0].audio)
    with pytest.raises(InputError, match=r"prosody rate 1.75 at character \d+ with speed 4 gives 7"):
        chunks(engine, '<speak><prosody rate="x-fast">Go.</prosody></speak>', speed=4.0)
    with pytest.raises(InputError, match=r"prosody pitch \+6 st .* gives \+16"):
        chunks(engine, '<speak><prosody pitch="x-high">Go.</prosody></speak>', pitch=10.0)


def test_batched_rows_match_one_by_one(engine):
    texts = [
        '<speak><prosody rate="slow">One two.</prosody><break time="100ms"/>Three.</speak>',
        "Plain four.",
    ]
    requests = [SynthesisRequest(text=t, voice="tiny", speaker="alpha", seed=3) for t in texts]
    got: dict[int, list[np.ndarray]] = {0: [], 1: []}
    for i, c in engine.synthesize_batch(requests):
        got[i].append(c.audio)
    for i, r in enumerate(requests):
        alone = [c.audio for c in engine.synthesize(r)]
        assert len(alone) == len(got[i])
        for a, b in zip(alone, got[i], strict=True):  # padded rows differ in their last 2 frames only
            assert len(a) == len(b)
            np.testing.assert_array_equal(a[:-400], b[:-400])


def test_teacher_yields_the_pauses_as_silent_chunks(engine):
    out = chunks(engine, '<speak><break time="50ms"/>Hi.<break time="0.1s"/></speak>', model="teacher")
    assert np.array_equal(out[0].audio, np.zeros(800, np.float32)) and not out[0].is_last
    assert np.array_equal(out[-1].audio, np.zeros(1600, np.float32)) and out[-1].is_last
    assert [c.index for c in out] == list(range(len(out)))
    assert not any(c.is_last for c in out[:-1])


def test_inline_phonemes_and_lexicon_give_the_same_audio(tmp_path):
    lex = tmp_path / "lexicon.txt"
    lex.write_text("# names\nkokoro\t/kˈOkəɹO/\n", encoding="utf-8")
    mine = tmp_path / "tiny.txt"
    mine.write_text("Kokoro\t/kəkˈɔːɹoʊ/\n", encoding="utf-8")
    plain = load_engine(VOICES, device="cpu", require_cuda=False)
    server = load_engine(VOICES, device="cpu", require_cuda=False, lexicon=lex)
    inline = chunks(plain, "Say [Kokoro](/kˈOkəɹO/) now.")
    assert [c.audio.tolist() for c in chunks(server, "Say KOKORO now.")] == [c.audio.tolist() for c in inline]
    assert len(chunks(plain, "Say Kokoro now.")[0].audio) != len(inline[0].audio) or not np.array_equal(
        chunks(plain, "Say Kokoro now.")[0].audio, inline[0].audio
    )
    # the voice's own lexicon wins over the server-wide one
    both = load_engine(VOICES, device="cpu", require_cuda=False, lexicon=lex, voice_lexicons={"tiny": mine})
    np.testing.assert_array_equal(
        chunks(both, "Say Kokoro now.")[0].audio, chunks(plain, "Say [Kokoro](/kəkˈɔːɹoʊ/) now.")[0].audio
    )
    with pytest.raises(InputError, match=r"symbol '9' .* \(at character 4\)"):
        chunks(plain, "Say [Kokoro](/k9/) now.")


def test_normalization_options_reach_the_engine(engine):
    default = chunks(engine, "Dr. Smith.")
    raw = chunks(engine, "Dr. Smith.", normalization=NormalizationOptions(normalize=False))
    assert len(default[0].audio) != len(raw[0].audio)
    same = chunks(engine, "Dr. Smith.", normalization=NormalizationOptions())
    np.testing.assert_array_equal(same[0].audio, default[0].audio)


def test_bad_lexicons_refuse_to_load_with_one_line(tmp_path):
    bad = tmp_path / "lex.txt"
    bad.write_text("ok\t/oʊkˈeɪ/\nKokoro\t/kˈ9kəɹo/\n", encoding="utf-8")
    with pytest.raises(EngineLoadError) as info:
        load_engine(VOICES, device="cpu", require_cuda=False, lexicon=bad)
    assert str(info.value) == (
        f"voice tiny: {bad}:2: 'Kokoro' /kˈ9kəɹo/: symbol '9' (U+0039) not in the voice's symbol set"
    )
    with pytest.raises(EngineLoadError, match="voice_lexicons names nobody, not a loaded voice"):
        load_engine(VOICES, device="cpu", require_cuda=False, voice_lexicons={"nobody": bad})
    with pytest.raises(EngineLoadError, match="cannot read lexicon"):
        load_engine(VOICES, device="cpu", require_cuda=False, lexicon=tmp_path / "missing.txt")


def test_ssml_streams_over_http_on_both_endpoints():
    app = create_app(make_settings(voices_dir=VOICES, device="cpu", reference_max_chars=200))
    text = '<speak>Hi. <break time="300ms"/><prosody rate="slow">Bye.</prosody></speak>'
    with TestClient(app, raise_server_exceptions=False) as client:
        wait_for(lambda: client.get("/health/ready").status_code == 200, what="ready")
        for path in ("/v1/audio/speech", "/v1/audio/speech/reference"):
            body = {"input": text, "voice": "alpha", "response_format": "pcm", "seed": 5}
            whole = client.post(path, json=body)
            assert whole.status_code == 200, whole.text
            with client.stream("POST", path, json={**body, "stream": True}) as r:
                streamed = b"".join(r.iter_bytes())
            assert streamed == whole.content
            pcm = np.frombuffer(whole.content, "<i2")
            zeros = np.flatnonzero(pcm == 0)
            runs = np.split(zeros, np.flatnonzero(np.diff(zeros) != 1) + 1)
            assert max(len(r) for r in runs) >= 4800  # the 300 ms break
            bad = client.post(path, json={**body, "input": "<speak>[x](/k9/)</speak>"})
            assert bad.status_code == 400 and "symbol '9'" in bad.json()["error"]["message"]


@pytest.mark.skipif(not (SHIPPED / "flite" / "voice.json").exists(), reason="no shipped voice")
def test_shipped_voice_rate_and_break_are_what_was_asked():
    """The real voice: a 50 % rate doubles the speech (within 10 %) and a break is its length of silence."""
    app = create_app(make_settings(voices_dir=SHIPPED, device="cpu"))
    with TestClient(app, raise_server_exceptions=False) as client:
        wait_for(lambda: client.get("/health/ready").status_code == 200, what="ready", timeout=120)

        def seconds(text: str) -> float:
            r = client.post(
                "/v1/audio/speech", json={"input": text, "voice": "rms", "response_format": "wav", "seed": 1}
            )
            assert r.status_code == 200, r.text
            audio, rate = sf.read(io.BytesIO(r.content), dtype="float32")
            return len(audio) / rate

        sentence = "The quick brown fox jumps over the lazy dog."
        normal = seconds(sentence)
        slow = seconds(f'<speak><prosody rate="50%">{sentence}</prosody></speak>')
        assert 1.8 <= slow / normal <= 2.2
        paused = seconds(f'<speak>{sentence}<break time="1500ms"/></speak>')
        assert paused - normal == pytest.approx(1.5, abs=1e-3)
