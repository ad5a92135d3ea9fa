"""Long-form ``parawave say``: blocks, streamed files, subtitles, interruption and resume (tiny bundle)."""

from __future__ import annotations

import re
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from service.cli import app
from service.loading import load_engine
from service.longform import Progress, blocks, speak_to_file
from service.types import SynthesisRequest

VOICES = Path(__file__).resolve().parents[1] / "fixtures" / "voices"
runner = CliRunner()

BOOK = " ".join(
    f"Chapter {i} begins here. The quick brown fox number {i} jumps over the lazy dog, again and again."
    for i in range(1, 9)
)


@pytest.fixture(scope="module")
def engine():
    return load_engine(VOICES, device="cpu")


def request(**kw) -> SynthesisRequest:
    return SynthesisRequest("", "tiny", "alpha", seed=7, **kw)


def test_blocks_are_whole_sentences_within_the_limit():
    got = list(blocks(BOOK, 200))
    assert len(got) > 3
    assert got[0][0] == 0 and got[-1][1] == len(BOOK)
    for a, b in got:
        assert b - a <= 200 and BOOK[b - 1] == "." and (a == 0 or BOOK[a - 1] == " ")
    assert " ".join(BOOK[a:b] for a, b in got) == BOOK
    assert list(blocks("...")) == []


def test_file_grows_valid_as_it_goes_and_subtitles_follow(engine, tmp_path):
    out, subs = tmp_path / "book.wav", tmp_path / "book.srt"
    seen: list[int] = []

    def check(chars: int) -> None:  # mid-run: the file on disk is already a complete wav
        data = out.read_bytes()
        riff, size = struct.unpack("<I", data[4:8])[0], struct.unpack("<I", data[40:44])[0]
        assert (riff, size) == (len(data) - 8, len(data) - 44)  # sizes in the header, not "unknown"
        seen.append(sf.info(str(out)).frames)

    result = speak_to_file(engine, BOOK, request(), out, "wav", subs, on_progress=check, max_chars=200)
    audio, rate = sf.read(str(out), dtype="float32")
    assert len(audio) == result.samples and rate == 16000
    assert seen[0] > 0 and seen == sorted(seen) and len(set(seen)) > 3
    text = subs.read_text()
    numbers = [int(n) for n in re.findall(r"^(\d+)$", text, re.M)]
    assert numbers == list(range(1, result.cues + 1)) and result.cues >= len(list(blocks(BOOK, 200)))
    ends = re.findall(r"--> (\d\d):(\d\d):(\d\d),(\d\d\d)", text)
    last = max(int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000 for h, m, s, ms in ends)
    assert last <= len(audio) / rate + 1e-3
    assert "Chapter 8 begins here." in text
    assert not Progress.path_for(out).exists()  # a finished run leaves no sidecar


class Interrupting:
    """The engine, raising KeyboardInterrupt (Ctrl-C) after ``after`` chunks."""

    def __init__(self, engine, after: int) -> None:
        self.engine, self.after, self.count = engine, after, 0

    @property
    def voices(self):
        return self.engine.voices

    def synthesize(self, req, cancel=None):
        for chunk in self.engine.synthesize(req, cancel):
            if self.count == self.after:
                raise KeyboardInterrupt
            self.count += 1
            yield chunk


@pytest.mark.parametrize("fmt", ["wav", "pcm"])
def test_interrupted_run_keeps_its_audio_and_resumes_to_the_same_file(engine, tmp_path, fmt):
    whole, subs_whole = tmp_path / f"whole.{fmt}", tmp_path / "whole.vtt"
    speak_to_file(engine, BOOK, request(), whole, fmt, subs_whole, max_chars=200)
    out, subs = tmp_path / f"cut.{fmt}", tmp_path / "cut.vtt"
    with pytest.raises(KeyboardInterrupt):
        speak_to_file(Interrupting(engine, 5), BOOK, request(), out, fmt, subs, max_chars=200)
    side = Progress.path_for(out)
    assert side.exists()
    if fmt == "wav":
        kept, _ = sf.read(str(out), dtype="float32")  # valid as it is: header sizes match
        assert len(kept) > 0
    result = speak_to_file(engine, BOOK, request(), out, fmt, subs, resume=True, max_chars=200)
    assert result.resumed_from > 0 and not side.exists()
    assert out.read_bytes() == whole.read_bytes()
    assert subs.read_text() == subs_whole.read_text()


def test_resume_with_other_text_starts_over(engine, tmp_path):
    out = tmp_path / "o.wav"
    with pytest.raises(KeyboardInterrupt):
        speak_to_file(Interrupting(engine, 3), BOOK, request(), out, "wav", max_chars=200)
    result = speak_to_file(engine, "Something else entirely.", request(), out, "wav", resume=True)
    assert result.resumed_from == 0 and sf.info(str(out)).frames == result.samples


def test_say_reads_standard_input_and_writes_subtitles(tmp_path):
    out, subs = tmp_path / "o.flac", tmp_path / "o.vtt"
    args = ["say", "-", "-o", str(out), "--subtitles", str(subs), "--voices-dir", str(VOICES), "--seed", "1"]
    result = runner.invoke(app, args, input=BOOK)
    assert result.exit_code == 0, result.output
    assert sf.info(str(out)).frames > 0
    assert subs.read_text().startswith("WEBVTT\n\n00:00:00.000 --> ")


def test_say_reads_a_file(tmp_path):
    src, out = tmp_path / "book.txt", tmp_path / "o.mp3"
    src.write_text(BOOK)
    result = runner.invoke(app, ["say", "--file", str(src), "-o", str(out), "--voices-dir", str(VOICES)])
    assert result.exit_code == 0, result.output
    assert out.stat().st_size > 0


def test_say_ctrl_c_is_a_clean_exit(tmp_path, monkeypatch):
    import service.longform

    def interrupted(*args, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(service.longform, "speak_to_file", interrupted)
    result = runner.invoke(app, ["say", "Hi.", "-o", str(tmp_path / "o.wav"), "--voices-dir", str(VOICES)])
    assert result.exit_code == 130 and "--resume" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["Hi.", "--file", "x.txt"], "not both"),
        ([], "give the text"),
        (["--file", "/nonexistent/book.txt"], "cannot read"),
        (["Hi.", "--subtitles", "o.ass"], "subtitle suffix"),
        (["   "], "empty"),
    ],
)
def test_say_bad_text_options_are_one_line_errors(tmp_path, args, message):
    result = runner.invoke(app, ["say", *args, "-o", str(tmp_path / "o.wav"), "--voices-dir", str(VOICES)])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output


def test_audio_does_not_depend_on_the_block_size_of_one_block(engine, tmp_path):
    """One block spoken by the long-form path is the engine's own audio for that text."""
    out = tmp_path / "o.pcm"
    text = "The quick brown fox jumps. Then it rests."
    speak_to_file(engine, text, request(), out, "pcm")
    direct = np.concatenate(
        [c.audio for c in engine.synthesize(SynthesisRequest(text, "tiny", "alpha", seed=7))]
    )
    got = np.frombuffer(out.read_bytes(), "<i2").astype(np.float32) / 32767
    np.testing.assert_allclose(got, np.clip(direct, -1, 1), atol=1.5 / 32767)
