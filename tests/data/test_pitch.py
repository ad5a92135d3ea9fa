"""F0 tracking per mel frame, its cache, the excitation built from it, and the periodicity metrics."""

from __future__ import annotations

import numpy as np
import pytest

from core.excitation import excitation
from model.data.config import AudioConfig

CFG = AudioConfig()
SR, HOP = CFG.sample_rate, CFG.hop_length


def harmonic_tone(f0: float, seconds: float, sr: int = SR) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 6))).astype(np.float32)


def test_track_f0_finds_the_pitch_of_a_tone_frame_by_frame():
    from model.data.pitch import track_f0

    audio = np.concatenate([harmonic_tone(150.0, 0.6), np.zeros(int(0.4 * SR), np.float32)])
    f0 = track_f0(audio, CFG)
    assert f0.shape == (audio.shape[0] // HOP,) and f0.dtype == np.float32
    tone = f0[8:40]  # well inside the tone (the first frames lack Praat's analysis window)
    assert (tone > 0).all() and np.abs(tone / 150.0 - 1).max() < 0.02
    assert (f0[-20:] == 0).all()  # silence is unvoiced
    assert not track_f0(np.zeros(1000, np.float32), CFG).any()  # shorter than a window: unvoiced


def test_cached_f0_writes_once_and_rejects_another_length(tmp_path):
    from model.data.pitch import cached_f0, f0_cache_path

    audio = harmonic_tone(120.0, 0.5)
    calls = []

    def loader(clip_id):
        calls.append(clip_id)
        return audio

    first = cached_f0(tmp_path, "c1", loader, CFG)
    assert f0_cache_path(tmp_path, "c1", CFG).is_file()
    again = cached_f0(tmp_path, "c1", loader, CFG, expected_frames=first.shape[0])
    assert np.array_equal(first, again) and calls == ["c1"]  # read from the cache
    cached_f0(tmp_path, "c1", loader, CFG, expected_frames=first.shape[0] + 1)  # wrong length: re-tracked
    assert calls == ["c1", "c1"]


def test_excitation_is_a_continuous_sine_where_voiced_and_zero_where_not():
    f0 = np.array([0, 0, 100, 100, 100, 100, 0, 0, 200, 200], np.float64)
    e = excitation(f0, HOP, SR)
    assert e.shape == (3, 10 * HOP) and e.dtype == np.float32
    voiced = np.repeat(f0 > 0, HOP)
    assert np.array_equal(e[2], voiced.astype(np.float32))
    assert not e[:, ~voiced].any()  # nothing where unvoiced
    np.testing.assert_allclose(e[0] ** 2 + e[1] ** 2, voiced, atol=1e-5)  # unit circle where voiced
    # 100 Hz at 16 kHz: one period every 160 samples, no jump at frame edges
    phase = np.unwrap(np.arctan2(e[0, 2 * HOP : 6 * HOP], e[1, 2 * HOP : 6 * HOP]))
    step = np.diff(phase)
    assert np.allclose(step[HOP:-HOP], 2 * np.pi * 100 / SR, atol=1e-5)  # float32 output
    assert step.max() < 2 * np.pi * 150 / SR  # no glide toward 0 Hz, nor up to 200 Hz, at the edges
    # batched == one row at a time; (B, F) of all-unvoiced is zeros
    both = excitation(np.stack([f0, np.zeros(10)]), HOP, SR)
    assert np.array_equal(both[0], e) and not both[1].any()
    with pytest.raises(ValueError):
        excitation(np.zeros((1, 2, 3)), HOP, SR)


def test_periodicity_metrics_tell_a_tone_from_noise():
    from evaluation.voicing import f0_error, hnr_db

    tone = harmonic_tone(140.0, 1.0)
    noise = np.random.default_rng(0).normal(0, 0.1, SR).astype(np.float32)
    assert hnr_db(tone, SR) > 20 and hnr_db(noise, SR) < 5
    ref = np.array([100.0, 100.0, 0.0, 120.0])
    assert f0_error(ref, ref) == {"f0_rmse_cents": 0.0, "f0_bias_cents": 0.0, "voicing_error": 0.0}
    octave = f0_error(ref, np.array([200.0, 200.0, 0.0, 0.0]))
    assert octave["f0_rmse_cents"] == pytest.approx(1200.0) and octave["voicing_error"] == 0.25
    assert octave["f0_bias_cents"] == pytest.approx(1200.0)  # sharp is positive ...
    flat = f0_error(ref, np.array([50.0, 50.0, 0.0, 120.0]))
    assert flat["f0_bias_cents"] == pytest.approx(-800.0)  # ... flat negative, mean over voiced-in-both
    assert flat["f0_rmse_cents"] == pytest.approx(np.sqrt(2 * 1200.0**2 / 3))
    assert f0_error(ref, np.array([200.0, 50.0, 0.0, 120.0]))["f0_bias_cents"] == pytest.approx(0.0)


def test_ingest_reports_pitch_coverage_and_flags_clips_without_pitch(tmp_path):
    from model.data.audio import save_wav
    from model.data.ingest import IngestOptions, format_report, validate_corpus

    (tmp_path / "wavs").mkdir()
    rng = np.random.default_rng(0)
    clips = {"tone": harmonic_tone(130.0, 1.0), "hiss": rng.normal(0, 0.05, SR).astype(np.float32)}
    for name, audio in clips.items():
        save_wav(tmp_path / "wavs" / f"{name}.wav", audio, SR)
    (tmp_path / "metadata.csv").write_text("tone|A tone.|A tone.\nhiss|A hiss.|A hiss.\n")
    report = validate_corpus(tmp_path, IngestOptions(pitch=True))
    flagged = [p.where for p in report.problems if p.kind == "pitch_untracked"]
    assert flagged == ["hiss"] and report.ok  # a warning, not an error
    assert 0.3 < report.pitch_voiced / report.pitch_frames < 0.6  # the tone, not the hiss
    assert "pitch (Praat):" in format_report(report)
    plain = validate_corpus(tmp_path, IngestOptions())
    assert plain.pitch_frames == 0 and "pitch (Praat)" not in format_report(plain)
