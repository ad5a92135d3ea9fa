"""The phase-true training excitation: locked to the recording's fundamental, not to F0's integral."""

from __future__ import annotations

import numpy as np
import pytest

from core.excitation import excitation
from model.data.excitation import recording_excitation

SR, HOP = 16000, 200


def _voice(freq: float, seconds: float, offset: float) -> np.ndarray:  # (T,) harmonic tone
    t = np.arange(int(seconds * SR)) / SR
    w = 2 * np.pi * freq * t + offset
    return (0.4 * np.cos(w) + 0.3 * np.cos(2 * w + 0.9) + 0.2 * np.cos(3 * w + 2.1)).astype(np.float32)


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / np.sqrt(np.dot(a, a) * np.dot(b, b)))


def test_locks_to_the_recordings_fundamental_not_the_tracks():
    """The track says 120 Hz, the recording is at 122 Hz with an arbitrary start phase: the
    phase-true excitation's cosine follows the recording's fundamental; the F0 excitation drifts
    off it by two whole cycles per second (the negative check)."""
    frames = 80  # 1 s
    f0 = np.full(frames, 120.0)
    audio = _voice(122.0, frames * HOP / SR, offset=1.3)
    fundamental = np.cos(2 * np.pi * 122.0 * np.arange(frames * HOP) / SR + 1.3)
    inner = slice(1000, frames * HOP - 1000)  # away from the window's edges
    true = recording_excitation(f0, audio, HOP, SR)  # (3, T)
    plain = excitation(f0, HOP, SR)  # (3, T)
    assert true.shape == plain.shape == (3, frames * HOP) and true.dtype == np.float32
    assert _corr(true[1, inner], fundamental[inner]) > 0.99
    assert _corr(true[0, inner], np.sin(2 * np.pi * 122.0 * np.arange(frames * HOP) / SR + 1.3)[inner]) > 0.99
    assert abs(_corr(plain[1, inner], fundamental[inner])) < 0.5


def test_start_phase_is_the_recordings():
    """Two recordings that differ only in start phase give excitations that differ by that phase."""
    f0 = np.full(40, 150.0)
    a = recording_excitation(f0, _voice(150.0, 0.5, 0.0), HOP, SR)
    b = recording_excitation(f0, _voice(150.0, 0.5, np.pi / 2), HOP, SR)
    inner = slice(800, 7200)
    assert _corr(a[1, inner], b[1, inner]) < 0.05  # quarter cycle apart: uncorrelated
    assert _corr(b[1, inner], -a[0, inner]) > 0.99  # cos(w + pi/2) = -sin(w)


def test_voicing_and_unvoiced_match_the_runtime_excitation():
    f0 = np.concatenate([np.zeros(10), np.full(30, 110.0), np.zeros(10)])
    audio = _voice(110.0, 50 * HOP / SR, 0.4)
    true = recording_excitation(f0, audio, HOP, SR)
    plain = excitation(f0, HOP, SR)
    np.testing.assert_array_equal(true[2], plain[2])  # voicing unchanged
    assert not true[:2, : 10 * HOP].any() and not true[:2, 40 * HOP :].any()  # silent where unvoiced
    silent = np.zeros(20)
    np.testing.assert_array_equal(
        recording_excitation(silent, audio[: 20 * HOP], HOP, SR), excitation(silent, HOP, SR)
    )
    short = recording_excitation(
        np.full(2, 100.0), audio[:300], HOP, SR
    )  # audio shorter than F*hop: zero-padded
    assert short.shape == (3, 400) and np.isfinite(short).all()
    with pytest.raises(ValueError, match="periods"):
        recording_excitation(f0, audio, HOP, SR, periods=0)


def test_dataset_serves_the_phase_asked_for(tmp_path):
    """VocoderDataset(excitation_phase="recording") windows carry the phase-true excitation of
    their own audio and F0; the default stays the runtime's; a bad phase is refused."""
    from corpus_factory import make_corpus

    from model.data.config import AudioConfig
    from model.data.dataset import VocoderDataset

    root = make_corpus(tmp_path / "c", [("rms_a", "a", 12000)], splits={"rms_a": "train"})
    cfg = AudioConfig()
    true = VocoderDataset(root, "train", cfg, 20, seed=0, excitation=True, excitation_phase="recording")[0]
    plain = VocoderDataset(root, "train", cfg, 20, seed=0, excitation=True)[0]
    assert true["id"] == plain["id"] and np.array_equal(true["f0"].numpy(), plain["f0"].numpy())
    np.testing.assert_array_equal(
        true["excitation"].numpy(),
        recording_excitation(true["f0"].numpy(), true["audio"].numpy(), cfg.hop_length, cfg.sample_rate),
    )
    np.testing.assert_array_equal(
        plain["excitation"].numpy(), excitation(plain["f0"].numpy(), cfg.hop_length, cfg.sample_rate)
    )
    assert plain["f0"].numpy().any() and not np.array_equal(
        true["excitation"].numpy(), plain["excitation"].numpy()
    )
    with pytest.raises(ValueError, match="excitation_phase"):
        VocoderDataset(root, "train", cfg, 20, excitation=True, excitation_phase="glottal")
