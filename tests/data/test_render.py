"""model.data.render and ``parawave data render``: real flite on corpora of a few short lines."""

from __future__ import annotations

import shutil
import stat
import sys
import types

import pytest
from typer.testing import CliRunner

from model.data import flite as F
from model.data import render as R
from model.data.audio import load_wav, wav_info
from model.data.ingest import parse_metadata, parse_splits
from service.cli import app

FLITE = shutil.which("flite")
needs_flite = pytest.mark.skipif(FLITE is None, reason="flite is not installed (apt-get install flite)")
runner = CliRunner()

TRAIN = "t1|The cat sat.\nt2|Hello there, world.\nt3|It is 2 o'clock.\n"
VAL = "v1|Good morning.\n"


@pytest.fixture
def texts(tmp_path):
    (tmp_path / "train.txt").write_text(TRAIN)
    (tmp_path / "val.txt").write_text(VAL)
    return [tmp_path / "train.txt", tmp_path / "val.txt"]


@pytest.fixture
def counting_flite(tmp_path):
    """A flite wrapper that logs each synthesis call (one line of arguments) and runs the real one."""
    log = tmp_path / "flite-calls.log"
    script = tmp_path / "flite-wrapper"
    script.write_text(
        f'#!/bin/sh\ncase "$*" in *" -o "*) printf "%s\\n" "$*" >> "{log}";; esac\nexec {FLITE} "$@"\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)

    def calls() -> list[str]:
        return log.read_text().splitlines() if log.exists() else []

    return str(script), calls


def rows(out):
    got, problems = parse_metadata(out / "metadata.csv")
    assert problems == []
    return got


@needs_flite
def test_single_voice(tmp_path, texts):
    out = tmp_path / "c"
    res = R.render_corpus(texts, ["rms"], out, jobs=2, progress=False)
    assert res.ok, res.failures
    assert (res.clips, res.rendered, res.skipped) == (4, 4, 0)
    meta = rows(out)
    assert [r.id for r in meta] == ["t1", "t2", "t3", "v1"]
    assert all(r.speaker is None for r in meta)  # one voice: three columns
    assert meta[1].text == "Hello there, world."
    assert (out / "metadata.csv").read_text().splitlines()[0].count("|") == 2
    for r in meta:
        audio, sr = load_wav(out / "wavs" / f"{r.id}.wav")
        assert sr == 16_000
        assert 0.3 < len(audio) / sr < 5.0
        assert audio.std() > 0.01  # speech, not silence
    splits, problems = parse_splits(out / "splits.csv")
    assert problems == []
    assert splits == {"t1": "train", "t2": "train", "t3": "train", "v1": "val"}
    assert sorted(p.name for p in out.iterdir()) == ["metadata.csv", "render.json", "splits.csv", "wavs"]
    assert not list((out / "wavs").glob(".*"))  # no temp files left


@needs_flite
def test_resume_skips_done_clips(tmp_path, texts, counting_flite):
    flite, calls = counting_flite
    out = tmp_path / "c"
    assert R.render_corpus(texts, ["rms"], out, jobs=2, progress=False, flite=flite).rendered == 4
    assert len(calls()) == 4
    wavs = {p.name: p.stat().st_mtime_ns for p in (out / "wavs").glob("*.wav")}
    before = (out / "metadata.csv").read_text()

    again = R.render_corpus(texts, ["rms"], out, jobs=2, progress=False, flite=flite)
    assert (again.rendered, again.skipped) == (0, 4)
    assert len(calls()) == 4  # flite was not run again
    assert {p.name: p.stat().st_mtime_ns for p in (out / "wavs").glob("*.wav")} == wavs
    assert (out / "metadata.csv").read_text() == before

    # a missing wav, a truncated wav, a killed run's temp file and an edited line: only those redo
    (out / "wavs" / "t1.wav").unlink()
    (out / "wavs" / "t2.wav").write_bytes(b"RIFF")
    (out / "wavs" / ".t3.wav.deadbeef.tmp").write_bytes(b"partial")
    texts[1].write_text("v1|Good evening.\n")
    third = R.render_corpus(texts, ["rms"], out, jobs=2, progress=False, flite=flite)
    assert (third.rendered, third.skipped) == (3, 1)
    assert len(calls()) == 7
    assert sorted(c.split()[-1].rsplit("/", 1)[-1].split(".")[1] for c in calls()[4:]) == ["t1", "t2", "v1"]
    assert not list((out / "wavs").glob(".*"))
    assert [r.text for r in rows(out) if r.id == "v1"] == ["Good evening."]
    assert len(rows(out)) == 4


@needs_flite
def test_multi_voice_ids_speakers_and_merge(tmp_path, texts):
    out = tmp_path / "mv"
    result = runner.invoke(
        app,
        ["data", "render", "--text", str(texts[0]), "--text", str(texts[1]), "--voice", "rms",
         "--voice", "slt", "--out", str(out), "--no-progress", "--jobs", "2"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "8 clips (8 rendered, 0 already done), 0 failed" in result.output
    meta = rows(out)
    ids = [r.id for r in meta]
    assert ids == [f"{v}_{i}" for v in ("rms", "slt") for i in ("t1", "t2", "t3", "v1")]
    assert all(r.speaker == r.id.split("_")[0] for r in meta)
    assert all(line.count("|") == 3 for line in (out / "metadata.csv").read_text().splitlines())
    splits, _ = parse_splits(out / "splits.csv")
    assert splits["slt_v1"] == "val" and splits["rms_t2"] == "train"
    rms, _ = load_wav(out / "wavs" / "rms_t1.wav")
    slt, _ = load_wav(out / "wavs" / "slt_t1.wav")
    assert rms.shape != slt.shape or abs(rms - slt).max() > 0.1  # two different voices

    # one more voice later, into the same folder: ids stay prefixed, old rows are kept
    res = R.render_corpus([texts[1]], ["awb"], out, progress=False)
    assert (res.rendered, res.skipped) == (1, 0)
    meta = rows(out)
    assert [r.id for r in meta][-1] == "awb_v1" and meta[-1].speaker == "awb"
    assert len(meta) == 9


@needs_flite
def test_comma_voices_and_single_voice_folder_conflict(tmp_path, texts):
    assert R.parse_voices(["rms,slt", "awb", "rms"]) == ["rms", "slt", "awb"]
    out = tmp_path / "one"
    R.render_corpus([texts[1]], ["rms"], out, progress=False)
    with pytest.raises(F.RenderError, match="unprefixed ids"):
        R.render_corpus([texts[1]], ["slt"], out, progress=False)


def test_metadata_only_needs_no_flite(tmp_path, texts, monkeypatch):
    monkeypatch.setattr(R, "get_normalizer", lambda: (lambda s: s.replace("2", "two"), "test"))
    out = tmp_path / "meta"
    res = R.render_corpus(
        texts, ["rms,slt"], out, metadata_only=True, flite=str(tmp_path / "no-flite"), progress=False
    )
    assert res.ok and res.clips == 8 and res.rendered == 0
    assert not (out / "wavs").exists()
    meta = {r.id: r for r in rows(out)}
    assert meta["rms_t3"].text == "It is 2 o'clock." and meta["rms_t3"].normalized == "It is two o'clock."
    assert meta["slt_t3"].speaker == "slt"
    splits, _ = parse_splits(out / "splits.csv")
    assert len(splits) == 8 and splits["rms_v1"] == "val"


@needs_flite
def test_flite_speaks_the_normalized_text(tmp_path, monkeypatch, counting_flite):
    flite, calls = counting_flite
    monkeypatch.setattr(R, "get_normalizer", lambda: (lambda s: s.replace("2", "two"), "test"))
    (tmp_path / "x.txt").write_text("n1|It is 2 now.\n")
    R.render_corpus([tmp_path / "x.txt"], ["rms"], tmp_path / "o", progress=False, flite=flite)
    assert "-t It is two now. -o" in calls()[0]
    assert not (tmp_path / "o" / "splits.csv").exists()  # stem "x": no split

    # without model.text, a folder prepared elsewhere keeps its recorded normalized text
    monkeypatch.setattr(R, "get_normalizer", lambda: (None, "unavailable (test)"))
    (tmp_path / "o" / "wavs" / "n1.wav").unlink()
    R.render_corpus([tmp_path / "x.txt"], ["rms"], tmp_path / "o", progress=False, flite=flite)
    assert "-t It is two now. -o" in calls()[1]


@needs_flite
def test_durations_limit_split_and_given_normalized(tmp_path):
    src = tmp_path / "lines.txt"
    src.write_text("d1|Dr. Who.|Doctor Who.\nd2|Yes.\nd3|Never rendered.\n")
    out = tmp_path / "dur"
    res = R.render_corpus([src], ["rms"], out, durations=True, limit=2, split="test", progress=False)
    assert res.ok and res.rendered == 2
    meta = rows(out)
    assert [(r.id, r.normalized) for r in meta] == [("d1", "Doctor Who."), ("d2", "Yes.")]
    assert parse_splits(out / "splits.csv")[0] == {"d1": "test", "d2": "test"}
    lines = (out / "durations" / "d1.txt").read_text().splitlines()
    phones = [line.split(":")[0] for line in lines]
    ends = [float(line.split(":")[1]) for line in lines]
    assert phones[0] == "pau" and {"d", "aa", "k", "t", "er", "hh", "uw"} <= set(phones)
    assert ends == sorted(ends)
    sr, frames, _ = wav_info(out / "wavs" / "d1.wav")
    assert abs(ends[-1] - frames / sr) < 0.02  # the last phone ends where the audio does

    # asking for durations later re-renders clips that lack them
    (out / "durations" / "d2.txt").unlink()
    again = R.render_corpus([src], ["rms"], out, durations=True, limit=2, split="test", progress=False)
    assert (again.rendered, again.skipped) == (1, 1)


@needs_flite
def test_bad_lines_are_reported_and_the_rest_render(tmp_path):
    src = tmp_path / "train.txt"
    src.write_text(
        "g1|Fine line.\nno separator here\ng1|Duplicate id.\n../x|Escapes.\n|No id.\ng2|Also fine.\n"
    )
    out = tmp_path / "bad"
    result = runner.invoke(
        app, ["data", "render", "-t", str(src), "--voice", "rms", "-o", str(out), "--no-progress"]
    )
    assert result.exit_code == 1
    for where in ("train.txt:2", "train.txt:3", "train.txt:4", "train.txt:5"):
        assert f"failed: {where}:" in result.output
    assert "2 clips (2 rendered, 0 already done), 4 failed" in result.output
    assert [r.id for r in rows(out)] == ["g1", "g2"]


def test_cli_user_errors_are_one_line(tmp_path, texts):
    missing = runner.invoke(
        app, ["data", "render", "-t", str(texts[0]), "--voice", "rms", "-o", str(tmp_path / "o"), "--flite",
              str(tmp_path / "not-here")],
    )  # fmt: skip
    assert missing.exit_code == 2
    assert "flite not found" in missing.output
    assert "Traceback" not in missing.output
    no_text = runner.invoke(
        app, ["data", "render", "-t", str(tmp_path / "nope.txt"), "--voice", "rms", "-o", "x"]
    )
    assert no_text.exit_code == 2 and "nope.txt not found" in no_text.output
    bad_split = runner.invoke(
        app,
        [
            "data",
            "render",
            "-t",
            str(texts[0]),
            "--voice",
            "rms",
            "-o",
            "x",
            "--split",
            "dev",
            "--metadata-only",
        ],
    )
    assert bad_split.exit_code == 2 and "--split must be one of" in bad_split.output


@needs_flite
def test_unknown_voice_is_refused(tmp_path, texts):
    # flite itself silently falls back to its default voice for an unknown name
    result = runner.invoke(
        app, ["data", "render", "-t", str(texts[1]), "--voice", "nosuch", "-o", str(tmp_path / "o")]
    )
    assert result.exit_code == 2
    assert "unknown flite voice 'nosuch'" in result.output


def test_get_normalizer_takes_the_function(monkeypatch):
    fake = types.ModuleType("model.text")
    monkeypatch.setitem(sys.modules, "model.text", fake)
    monkeypatch.delitem(sys.modules, "model.text.normalize", raising=False)
    fake.normalize = str.upper  # the contract: model.text re-exports normalize()
    fn, name = R.get_normalizer()
    assert name == "model.text" and fn("ab") == "AB"
    sub = types.ModuleType("model.text.normalize")  # a package that only has the submodule
    sub.normalize = str.lower
    fake.normalize = sub
    assert R.get_normalizer()[0]("AB") == "ab"
    del fake.normalize
    fn, name = R.get_normalizer()
    assert fn is None and name.startswith("unavailable")


def test_flite_text_is_ascii():
    assert F.flite_text("Müller  à la “crème”  brûlée") == "Muller a la creme brulee"
    assert F.flite_text("plain words.") == "plain words."


@needs_flite
def test_accented_text_is_folded_in_metadata(tmp_path, monkeypatch):
    monkeypatch.setattr(R, "get_normalizer", lambda: (None, "unavailable (test)"))
    (tmp_path / "u.txt").write_text("u1|Müller said so.\n", encoding="utf-8")
    R.render_corpus([tmp_path / "u.txt"], ["rms"], tmp_path / "o", progress=False, durations=True)
    (row,) = rows(tmp_path / "o")
    assert row.text == "Müller said so." and row.normalized == "Muller said so."
    phones = [line.split(":")[0] for line in (tmp_path / "o" / "durations" / "u1.txt").read_text().split()]
    assert phones[:4] == ["pau", "m", "ah", "l"]  # "Muller", not flite's reading of UTF-8 bytes


@needs_flite
def test_metadata_only_drops_audio_whose_words_changed(tmp_path, monkeypatch):
    monkeypatch.setattr(R, "get_normalizer", lambda: (None, "unavailable (test)"))
    src = tmp_path / "val.txt"
    src.write_text("s1|One line.\ns2|Two lines.\n")
    out = tmp_path / "o"
    R.render_corpus([src], ["rms"], out, progress=False, durations=True)
    src.write_text("s1|One line.\ns2|Second line.\n")
    R.render_corpus([src], ["rms"], out, progress=False, metadata_only=True)
    assert (out / "wavs" / "s1.wav").is_file() and (out / "durations" / "s1.txt").is_file()
    assert not (out / "wavs" / "s2.wav").exists() and not (out / "durations" / "s2.txt").exists()
    res = R.render_corpus([src], ["rms"], out, progress=False)
    assert (res.rendered, res.skipped) == (1, 1)
