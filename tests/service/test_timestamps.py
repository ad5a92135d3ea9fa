"""Word timestamps: the text front end's word map, timings from durations, subtitles, the engine
(tiny fixture bundle) and the HTTP API (captioned endpoint, SSE timestamp events; fake engine)."""

from __future__ import annotations

import base64
import io
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from fake_engine import expected_audio, expected_words

from model.text import normalize, phonemize
from model.text.frontend import prepare_text
from model.text.wordmap import WordSpan, word_spans
from service.loading import load_engine
from service.timing import (
    Timeline,
    cues,
    phoneme_groups,
    sentence_timings,
    speech_bounds,
    srt,
    subtitles,
    webvtt,
)
from service.types import AudioChunk, PhonemeTiming, SynthesisRequest, WordTiming

VOICES = Path(__file__).resolve().parents[1] / "fixtures" / "voices"


def spans(text: str):
    normalized = normalize(text)
    phonemes = phonemize(normalized)
    return word_spans(text, (0, len(text)), normalized, phonemes), phonemes


# ------------------------------------------------------------------------------------- word map


def test_written_tokens_keep_their_spans_through_normalization():
    text = "It cost $19.99, said Mrs. Smith of the U.S. Army."
    words, phonemes = spans(text)
    assert [w.text for w in words] == [
        "It",
        "cost",
        "$19.99",
        "said",
        "Mrs",
        "Smith",
        "of",
        "the",
        "U.S.",
        "Army",
    ]
    for w in words:
        assert text[w.start : w.end] == w.text
    money = words[2]
    assert money.spoken[:2] == ("nineteen", "dollars") and money.spoken[-1] == "cents"
    # the money token's phonemes run from "nineteen" to "cents", nothing of "said"
    said = phonemize("said")
    assert phonemes[money.phonemes[0] :].startswith(phonemize("nineteen")[:3])
    assert said not in phonemes[money.phonemes[0] : money.phonemes[1]]
    assert words[4].spoken == ("Missus",)


def test_words_espeak_merges_are_split_again():
    # espeak speaks "of the" as one word ("ʌvðə") and "that it" as "ðˌɐɾɪt"
    words, phonemes = spans("The end of the house, that it was.")
    by = {w.text: phonemes[w.phonemes[0] : w.phonemes[1]] for w in words}
    assert "ʌvðə" in phonemes.replace(" ", "") and by["of"] == "ʌv" and by["the"] == "ðə"
    assert by["that"].startswith("ð") and by["it"].endswith("t")
    # ranges in order, disjoint, and every phoneme of a word belongs to it alone
    ends = [(w.phonemes[0], w.phonemes[1]) for w in words]
    assert all(a < b for a, b in ends)
    assert all(b1 <= a2 for (_, b1), (a2, _) in itertools.pairwise(ends))


def test_stress_marks_go_with_the_word_they_stress():
    words, phonemes = spans("the U.S. Army on March 4")
    assert "ˈɑːɹmi ˌɔn" in phonemes  # espeak stresses "on" here: the mark begins the word after the space
    army, on = words[2], words[3]
    assert phonemes[army.phonemes[0] : army.phonemes[1]] == "ˈɑːɹmi"
    assert phonemes[on.phonemes[0] : on.phonemes[1]] == "ˌɔn"


def test_tokens_with_nothing_to_say_get_no_word():
    words, _ = spans("Wait -- what?")
    assert [w.text for w in words] == ["Wait", "what"]


# ------------------------------------------------------------------------------------- timings


def test_timings_follow_the_durations_exactly():
    text = "of the end, now"
    words, phonemes = spans(text)
    durations = np.arange(1, len(phonemes) + 1)  # (L,) frames
    per = 200 / 16000
    ws, ps = sentence_timings(words, phonemes, durations, per)
    edges = np.concatenate([[0], np.cumsum(durations)]) * per  # (L + 1,)
    for w, span in zip(ws, words, strict=True):
        a, b = span.phonemes
        # words meet in the middle of the space between them; pause marks stay outside
        start = (edges[a - 1] + edges[a]) / 2 if a > 0 and phonemes[a - 1] == " " else edges[a]
        end = (edges[b] + edges[b + 1]) / 2 if b < len(phonemes) and phonemes[b] == " " else edges[b]
        assert (w.start, w.end) == pytest.approx((start, end))
    assert ws[0].start == 0 and ws[1].start == pytest.approx(ws[0].end)  # "of the": one space between
    comma = phonemes.index(",")
    assert ws[2].end == pytest.approx(edges[comma]) and ws[3].start > edges[comma + 1]
    assert ps[-1].end == pytest.approx(edges[-1]) and ps[0].start == 0
    assert "".join(p.phoneme for p in ps) == phonemes
    with pytest.raises(ValueError):
        sentence_timings(words, phonemes, durations[:-1], per)


def test_leading_and_trailing_silence_is_cut_from_the_edge_phonemes():
    # the first phoneme holds 10 silent frames then 2 of sound; the last 2 of sound then 6 silent
    durations = np.array([12, 10, 10, 8])  # (L,)
    energy = np.concatenate([np.full(10, -9.0), np.full(24, -3.0), np.full(6, -9.0)])
    mel = np.tile(energy, (4, 1))  # (n_mels, F)
    assert speech_bounds(mel, durations) == (10, 34)
    word = WordSpan("ab", 0, 2, ("ab",), (0, 2))
    ws, ps = sentence_timings([word], "abcd", durations, 0.01, (10, 34))
    assert ps[0] == PhonemeTiming(" ", 0.0, 0.1) and ps[1].start == pytest.approx(0.1)
    assert ps[-1] == PhonemeTiming(" ", pytest.approx(0.34), pytest.approx(0.4)) and ps[
        -2
    ].end == pytest.approx(0.34)
    assert ws[0].start == pytest.approx(0.1)
    flat = np.full((4, 40), -3.0)  # no silence at all: nothing cut
    assert speech_bounds(flat, durations) == (0, 40)


def test_phoneme_groups_keep_stress_and_length_with_their_symbol():
    s = "ˈɑːɹmi ðˌə"
    assert [s[a:b] for a, b in phoneme_groups(s)] == ["ˈɑː", "ɹ", "m", "i", " ", "ð", "ˌə"]


def test_timeline_turns_chunk_times_into_response_times():
    w = WordTiming("a", 0.1, 0.2, 0, 1)
    tl = Timeline()
    tl.add(AudioChunk(np.zeros(16000, np.float32), 16000, 0, False, "a", (0, 1), (w,)))
    words, _ = tl.add(AudioChunk(np.zeros(8000, np.float32), 16000, 1, True, "b", (2, 3), (w,)))
    assert words[0].start == pytest.approx(1.1) and tl.seconds == pytest.approx(1.5)
    assert tl.samples == 24000 and tl.sentence_ends == {1, 3}


# ------------------------------------------------------------------------------------- subtitles


def _words(text: str, per: float = 0.3) -> list[WordTiming]:
    import re

    return [
        WordTiming(m.group(), k * per, k * per + 0.25, m.start(), m.end())
        for k, m in enumerate(re.finditer(r"\S+", text))
    ]


def test_cues_are_readable_and_break_at_sentences():
    text = (
        "Mrs. Smith went to town. She bought a very long list of things that nobody else in the whole "
        "village had ever thought of buying, and then she walked home again slowly along the river."
    )
    sentence_ends = {len("Mrs. Smith went to town."), len(text)}
    got = cues(_words(text), text, sentence_ends=sentence_ends)
    assert got[0].lines == ("Mrs. Smith went to town.",)  # "Mrs." is not an end
    for c in got:
        assert 1 <= len(c.lines) <= 2 and all(len(line) <= 42 for line in c.lines), c
        assert c.end > c.start
    assert " ".join(" ".join(c.lines) for c in got) == text
    assert all(a.end <= b.start for a, b in itertools.pairwise(got))
    without = cues(_words(text), text)  # no sentence ends known: "Mrs." looks like one
    assert without[0].lines == ("Mrs.",)


def test_no_line_passes_the_limit_even_when_the_cue_text_would_fit_in_two():
    # 84 characters in all, but no cut between words leaves both lines within 42
    text = (
        "The Secret Service believed that it was very doubtful that any President would ride regularly "
        "in a vehicle with a fixed top, even though transparent."
    )
    got = cues(_words(text), text, sentence_ends={len(text)})
    assert all(len(line) <= 42 for c in got for line in c.lines), got
    assert " ".join(" ".join(c.lines) for c in got) == text


def test_srt_and_webvtt_formats():
    text = "Hello there. A < b --> c & d."
    got = cues(_words(text, per=1.0), text, sentence_ends={12, len(text)})
    assert (
        srt(got)
        == "1\n00:00:00,000 --> 00:00:01,250\nHello there.\n\n2\n00:00:02,000 --> 00:00:08,250\nA < b --> c & d.\n\n"
    )
    assert webvtt(got).startswith("WEBVTT\n\n00:00:00.000 --> 00:00:01.250\nHello there.\n\n")
    assert "A &lt; b -> c &amp; d." in webvtt(got)
    assert subtitles(_words(text), text, "vtt").startswith("WEBVTT")


# ------------------------------------------------------------------------------------- engine


@pytest.fixture(scope="module")
def onnx():
    return load_engine(VOICES, device="cpu")


TEXT = "It cost $19.99 at 5 p.m. yesterday. Then we walked home along the river, slowly."


def _timeline(onnx, **kw) -> tuple[Timeline, list[AudioChunk]]:
    request = SynthesisRequest(TEXT, "tiny", "alpha", seed=1, timestamps=True, **kw)
    tl, chunks = Timeline(), list(onnx.synthesize(request))
    for c in chunks:
        tl.add(c)
    return tl, chunks


def test_engine_words_cover_the_returned_audio(onnx):
    tl, chunks = _timeline(onnx)
    words = tl.words
    assert [w.word for w in words] == [
        "It", "cost", "$19.99", "at", "5", "p.m.", "yesterday", "Then", "we", "walked", "home", "along",
        "the", "river", "slowly",
    ]  # fmt: skip
    for w in words:
        assert TEXT[w.char_start : w.char_end] == w.word
        assert 0 <= w.start <= w.end
    assert all(a.end <= b.start + 1e-9 for a, b in itertools.pairwise(words))
    # the phonemes of each sentence tile its audio exactly (pauses included)
    for c in chunks:
        assert c.phonemes[0].start == 0 and c.phonemes[-1].end == pytest.approx(c.duration)
    assert words[-1].end <= tl.seconds
    # the second sentence starts after the first one's audio
    first_len = chunks[0].duration
    assert words[7].start >= first_len - 1e-9 and words[6].end <= first_len + 1e-9


def test_engine_timings_are_the_durations_at_the_requested_speed_and_ignore_pitch(onnx):
    voice = onnx.voice("tiny")
    sentences = prepare_text(TEXT, voice.symbols)
    slow, _ = _timeline(onnx)
    high, _ = _timeline(onnx, pitch=5.0)
    assert [w.start for w in high.words] == [w.start for w in slow.words]
    for speed in (1.0, 2.0, 0.5):
        _, chunks = _timeline(onnx, speed=speed)
        for s, c in zip(sentences, chunks, strict=True):
            _, _, durations = voice.features_timed([s.ids], [0], [speed])[0]  # (L,) frames
            edges = np.concatenate([[0], np.cumsum(durations)]) * voice.hop / voice.sample_rate
            assert len(c.audio) == int(durations.sum()) * voice.hop
            starts = [p.start for p in c.phonemes]
            np.testing.assert_allclose(
                [*starts, c.phonemes[-1].end], edges[[a for a, _ in phoneme_groups(s.phonemes)] + [-1]]
            )


def test_teacher_pieces_carry_the_same_timings(onnx):
    student, _ = _timeline(onnx)
    teacher, chunks = _timeline(onnx, model="teacher")
    assert len(chunks) > 2
    assert [(w.word, round(w.start, 6), round(w.end, 6)) for w in teacher.words] == [
        (w.word, round(w.start, 6), round(w.end, 6)) for w in student.words
    ]
    # each word rides on the piece in which it ends (after its audio)
    seconds = 0.0
    for c in chunks:
        for w in c.words:
            assert w.end <= c.duration + 1e-9
        seconds += c.duration


def test_batch_timings_match_single_runs(onnx):
    one, _ = _timeline(onnx)
    requests = [
        SynthesisRequest(TEXT, "tiny", "alpha", seed=1, timestamps=True),
        SynthesisRequest("Hi.", "tiny", "beta"),
    ]
    tl = Timeline()
    for i, chunk in onnx.synthesize_batch(requests):
        if i == 0:
            tl.add(chunk)
        else:
            assert chunk.words == ()  # not asked
    assert [(w.word, w.start) for w in tl.words] == [(w.word, w.start) for w in one.words]


def test_no_timestamps_unless_asked(onnx):
    chunks = list(onnx.synthesize(SynthesisRequest(TEXT, "tiny", "alpha", seed=1)))
    assert all(c.words == () and c.phonemes == () for c in chunks)


def test_prepare_text_keeps_what_the_ids_encode(onnx):
    voice = onnx.voice("tiny")
    for s in prepare_text(TEXT, voice.symbols):
        assert len(s.phonemes) == len(s.ids) and voice.symbols.encode(s.phonemes) == list(s.ids)


# ------------------------------------------------------------------------------------- HTTP


HTTP_TEXT = "Hello there world. It is late now!"


def _wire(words: list[WordTiming]) -> list[dict]:
    return [
        {
            "word": w.word,
            "start_time": round(w.start, 3),
            "end_time": round(w.end, 3),
            "char_start": w.char_start,
            "char_end": w.char_end,
            "phonemes": w.phonemes,
        }
        for w in words
    ]


def test_captioned_speech_returns_audio_and_word_times(client):
    r = client.post(
        "/v1/audio/speech/captioned",
        json={"input": HTTP_TEXT, "response_format": "wav", "subtitles": "srt", "speed": 2.0},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    audio, rate = sf.read(io.BytesIO(base64.b64decode(body["audio"])), dtype="float32")
    np.testing.assert_allclose(audio, expected_audio(HTTP_TEXT, speed=2.0), atol=1 / 32767)
    assert body["audio_format"] == "wav" and body["sample_rate"] == rate == 16000
    assert body["duration"] == pytest.approx(len(audio) / rate, abs=1e-3)
    assert body["timestamps"] == _wire(expected_words(HTTP_TEXT, speed=2.0))
    assert body["subtitles"].startswith("1\n00:00:00,000 --> ") and "Hello there world." in body["subtitles"]
    assert "phonemes" not in body


def test_captioned_speech_streams_ndjson_with_words_after_their_audio(client):
    r = client.post(
        "/v1/audio/speech/captioned",
        json={"input": HTTP_TEXT, "response_format": "pcm", "stream": True, "model": "tts-1-hd"},
    )
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(x) for x in r.text.splitlines()]
    assert lines[-1]["done"] is True
    samples, words = 0, []
    for line in lines[:-1]:
        samples += len(base64.b64decode(line["audio"])) // 2
        for w in line["timestamps"]:
            assert w["end_time"] <= samples / 16000 + 1e-3  # its audio came before or with it
            words.append(w)
    assert words == _wire(expected_words(HTTP_TEXT))
    assert lines[-1]["duration"] == pytest.approx(samples / 16000, abs=1e-3)


def test_sse_timestamp_events_follow_their_audio(client):
    body = {"input": HTTP_TEXT, "response_format": "pcm", "stream_format": "sse", "timestamps": True}
    r = client.post("/v1/audio/speech", json=body)
    events = [json.loads(e[len("data: ") :]) for e in r.text.split("\n\n") if e]
    types = [e["type"] for e in events]
    assert types == [
        "speech.audio.delta",
        "speech.audio.timestamps",
        "speech.audio.delta",
        "speech.audio.timestamps",
        "speech.audio.done",
    ]
    words = [w for e in events if e["type"] == "speech.audio.timestamps" for w in e["words"]]
    assert words == _wire(expected_words(HTTP_TEXT))
    plain = client.post("/v1/audio/speech", json={**body, "timestamps": False})
    assert "speech.audio.timestamps" not in plain.text


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/v1/audio/speech", {"timestamps": True}, "timestamps"),
        ("/v1/audio/speech", {"timestamps": "yes", "stream_format": "sse"}, "timestamps"),
        ("/v1/audio/speech/captioned", {"subtitles": "ass"}, "subtitles"),
        ("/v1/audio/speech/captioned", {"stream_format": "sse"}, "stream_format"),
        ("/v1/audio/speech/captioned", {"input": "x" * 4097}, "input"),
        ("/v1/audio/speech/captioned", {"input": "  "}, "input"),
    ],
)
def test_bad_caption_requests_get_the_openai_envelope(client, path, body, param):
    r = client.post(path, json={"input": "Hello.", **body})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param and r.json()["error"]["type"] == "invalid_request_error"


def test_captioned_endpoint_is_in_the_openapi_schema(client):
    schema = client.get("/openapi.json").json()
    op = schema["paths"]["/v1/audio/speech/captioned"]["post"]
    assert "application/x-ndjson" in op["responses"]["200"]["content"]
    body = schema["components"]["schemas"]["CaptionedSpeechBody"]
    assert body["properties"]["input"]["maxLength"] == 4096
    assert "timestamps" in schema["components"]["schemas"]["SpeechBody"]["properties"]
    kokoro = client.post("/dev/captioned_speech", json={"input": HTTP_TEXT, "response_format": "wav"})
    assert kokoro.json()["timestamps"] == _wire(expected_words(HTTP_TEXT))
