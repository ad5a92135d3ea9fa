"""A training excitation whose phase is the recording's own (phase-true), not F0's integral from 0.

The runtime's excitation (:func:`core.excitation.excitation`) integrates the F0 track from phase
0 at the start of the signal. Cut from a training window, that phase is unrelated to where the
recording's glottal cycles actually fall, so it tells an autoregressive teacher nothing its clean
past does not already say better (the period) -- and the teacher learns to ignore it. Measured:
its output pitch does not move when the excitation's F0 is shifted by 150 cents
(``bench.excitation_follow``).

Here the phase is locked to the recording's first harmonic, so the excitation *predicts* samples:

    phase_f0[t], voiced[t]  = core.excitation.f0_phase(f0)         (T,)
    z[t]                    = audio[t] * exp(-i phase_f0[t]) * voiced  the 1st harmonic -> ~DC
    offset[t]               = angle((z * hann(N))[t]),  N = `periods` periods of the median F0
    phase[t]                = phase_f0[t] + offset[t]                  (T,)
    excitation              = [sin(phase), cos(phase), 1] * voiced     (3, T)

A Hann window of N = 3 periods has its zeros at multiples of F0/3 from 2 F0/3 on, so after the
shift the 2nd harmonic (at +F0), the 1st's mirror image (at -2 F0) and the higher harmonics fall on
or near zeros, and what is left is the fundamental's phase relative to the track's, smoothed over
three periods. The offset also absorbs slow F0-track errors: the phase-true excitation runs at the
recording's frequency, not the track's.

Training only (non-causal, needs the recording): at inference the excitation comes from F0 alone,
and a teacher that has learned to follow the excitation's cycles follows the requested pitch.
"""

from __future__ import annotations

import numpy as np

from core.excitation import excitation_from_phase, f0_phase

__all__ = ["EXCITATION_PHASES", "recording_excitation"]

EXCITATION_PHASES = ("f0", "recording")


def recording_excitation(
    f0: np.ndarray, audio: np.ndarray, hop: int, sample_rate: int, periods: float = 3.0
) -> np.ndarray:
    """f0 (F,) Hz (0 = unvoiced), audio (>= F*hop,) -> (3, F*hop) float32 excitation phase-locked
    to the audio's first harmonic; see the module docstring."""
    if periods <= 0:
        raise ValueError(f"periods must be positive, got {periods}")
    f0 = np.asarray(f0, dtype=np.float64)
    phase, voiced = f0_phase(f0, hop, sample_rate)  # (T,) each
    if not voiced.any():
        return excitation_from_phase(phase, voiced)
    T = phase.shape[0]
    x = np.zeros(T, dtype=np.float64)
    a = np.asarray(audio, dtype=np.float64)[:T]
    x[: a.shape[0]] = a  # (T,)
    f_ref = float(np.median(f0[f0 > 0]))
    n = min(T, max(3, round(periods * sample_rate / f_ref)))  # taps
    window = np.hanning(n + 2)[1:-1]  # (N,) no zero end taps
    z = x * np.exp(-1j * phase) * voiced  # (T,) complex: the fundamental near DC
    smooth = np.convolve(z, window, mode="same")[:T]  # (T,)
    return excitation_from_phase(phase + np.angle(smooth), voiced)
