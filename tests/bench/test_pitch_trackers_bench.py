"""The measurement tools behind the tracker choice and the LPC-offset verdict: their ground truth is
what they claim, and their scores move when the estimate is wrong."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal

from bench import lpc_offset as L
from bench import pitch_trackers as P
from model.data.config import AudioConfig

CFG = AudioConfig()


def test_synthetic_utterance_truth_is_what_praat_hears():
    pytest.importorskip("parselmouth")
    utt = P.synthetic_utterance(np.random.default_rng(3), CFG, low=False)
    assert utt.audio.shape[0] // CFG.hop_length == utt.f0.shape[0] == utt.label.shape[0]
    assert (utt.label == 1).mean() > 0.4 and (utt.label == 0).mean() > 0.1  # speech-like
    est = P.trackers(CFG, P.PitchConfig())["praat"](utt.audio)
    good = P.Score()
    good.add(est, utt.f0, utt.label == 1, utt.label >= 0)
    gpe, vde, _, fine, _ = good.row()
    assert gpe < 0.01 and vde < 0.02 and fine < 30
    # the same track scored against a truth an octave off is all gross errors
    bad = P.Score()
    bad.add(est, 2 * utt.f0, utt.label == 1, utt.label >= 0)
    assert bad.row()[0] > 0.95


def test_score_counts_voicing_and_gross_errors():
    ref = np.array([100.0, 100.0, 100.0, 0.0, 0.0, 100.0])
    est = np.array([101.0, 130.0, 0.0, 0.0, 90.0, 100.0])
    s = P.Score()
    s.add(est, ref, ref > 0, np.array([True] * 5 + [False]))  # the last frame is not scored
    gpe, vde, ffe, _, _ = s.row()
    assert gpe == pytest.approx(1 / 3)  # 130 Hz is > 20 % off; of 3 scored voiced frames
    assert vde == pytest.approx(2 / 5)  # one missed voicing, one false voicing
    assert ffe == pytest.approx(3 / 5)


def test_lpc_from_an_exact_spectrum_recovers_a_known_all_pole_filter():
    """The bench's "exact envelope" reference: model.lpc's recipe on the true power spectrum."""
    import torch

    from model.data.features import mel_filterbank
    from model.lpc import LPCFromMel

    a_true = np.array([1.0, -1.3, 0.8, -0.2])  # stable AR(3)
    _, h = signal.freqz([1.0], a_true, worN=CFG.n_fft // 2 + 1, whole=False, include_nyquist=True)
    power = torch.tensor((np.abs(h) ** 2)[None, None, :], dtype=torch.float32)  # (1, 1, n_bins): exact
    lpc = LPCFromMel(mel_filterbank(CFG), CFG.n_fft, CFG.sample_rate, 3)
    a = lpc.from_power(power)  # (1, 3, 1)
    np.testing.assert_allclose(a[0, :, 0].numpy(), a_true[1:], atol=0.02)  # the lag window blurs a little
    # and its prediction whitens the process it came from
    rng = np.random.default_rng(0)
    x = signal.lfilter([1.0], a_true, rng.standard_normal(4 * CFG.hop_length))
    pred = L.lp_of(x, a.repeat(1, 1, 4))  # 4 frames of the same filter
    assert L.gain_db(x, pred) > 5
    assert L.gain_db(x, np.zeros_like(x)) == pytest.approx(0.0)
    # negative check: the prediction one sample late (the past not shifted) whitens nothing
    assert L.gain_db(x[1:], pred[:-1]) < 1
