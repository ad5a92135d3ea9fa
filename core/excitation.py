"""The vocoders' sample-rate excitation from a frame-rate F0 contour (numpy, torch-free).

One function serves training (``model.data.dataset`` windows) and the runtime (``service.engine``,
once per utterance before the student's pieces), so both see the same signal:

    f0 (B, F) Hz per mel frame, 0 = unvoiced
      -> per-sample F0: linear interpolation between frame centres, across unvoiced gaps from the
         neighbouring voiced frames (no glide down to 0 at a voicing boundary)
      -> voiced per sample: its frame's voicing (a step at the frame edge)
      -> phase[t] = 2 pi * sum_{u <= t} f0[u] * voiced[u] / sr   (float64, continuous: it only holds
         still while unvoiced, never jumps)
      -> excitation (B, 3, F*hop) = [sin(phase) * voiced, cos(phase) * voiced, voiced]

Source-filter vocoders (NSF) and the original WaveNet TTS give the network the periodic source
instead of making it discover periodicity from a mel; here it is conditioning beside the mel (the
student's noise z stays its only random input). The phase starts at 0 at sample 0 of the signal
given: the runtime computes it once per utterance, so chunked synthesis matches one pass exactly.
Training's phase-true variant (``model.data.excitation``) reuses :func:`f0_phase` and
:func:`excitation_from_phase`.
"""

from __future__ import annotations

import numpy as np

__all__ = ["EXCITATION_CHANNELS", "excitation", "excitation_from_phase", "f0_phase"]

EXCITATION_CHANNELS = 3


def excitation(f0: np.ndarray, hop: int, sample_rate: int) -> np.ndarray:
    """f0 (F,) or (B, F) Hz, 0 = unvoiced -> (3, F*hop) or (B, 3, F*hop) float32; see the module docstring."""
    f0 = np.asarray(f0, dtype=np.float64)
    if f0.ndim not in (1, 2):
        raise ValueError(f"f0 must be (F,) or (B, F), got shape {f0.shape}")
    if hop <= 0 or sample_rate <= 0:
        raise ValueError("hop and sample_rate must be positive")
    if f0.ndim == 1:
        return _one(f0, hop, sample_rate)
    return (
        np.stack([_one(row, hop, sample_rate) for row in f0])
        if len(f0)
        else np.zeros((0, EXCITATION_CHANNELS, f0.shape[1] * hop), np.float32)
    )


def _one(f0: np.ndarray, hop: int, sr: int) -> np.ndarray:  # (F,) -> (3, F*hop)
    phase, v_s = f0_phase(f0, hop, sr)  # (T,) each
    return excitation_from_phase(phase, v_s)


def f0_phase(f0: np.ndarray, hop: int, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """f0 (F,) Hz -> (phase (F*hop,) float64 radians, unwrapped; voiced (F*hop,) bool): the
    per-sample phase and voicing of the module docstring, before sin/cos."""
    f0 = np.asarray(f0, dtype=np.float64)
    n_frames = f0.shape[0]
    f0 = np.where(np.isfinite(f0) & (f0 > 0), f0, 0.0)  # (F,)
    voiced = f0 > 0  # (F,)
    v_s = np.repeat(voiced, hop)  # (T,)
    if not voiced.any():
        return np.zeros(n_frames * hop), v_s
    frames = np.arange(n_frames, dtype=np.float64)
    filled = np.interp(frames, frames[voiced], f0[voiced])  # (F,) unvoiced frames from voiced neighbours
    t = (np.arange(n_frames * hop, dtype=np.float64) + 0.5) / hop - 0.5  # (T,) position in frames
    f_s = np.interp(t, frames, filled)  # (T,) Hz, linear between frame centres
    phase = 2.0 * np.pi * np.cumsum(np.where(v_s, f_s, 0.0) / sample_rate)  # (T,)
    return phase, v_s


def excitation_from_phase(phase: np.ndarray, voiced: np.ndarray) -> np.ndarray:
    """phase (T,) radians, voiced (T,) bool -> (3, T) float32 [sin * voiced, cos * voiced, voiced]."""
    phase = np.mod(phase, 2.0 * np.pi)
    out = np.empty((EXCITATION_CHANNELS, phase.shape[0]), dtype=np.float32)
    out[0] = np.sin(phase) * voiced
    out[1] = np.cos(phase) * voiced
    out[2] = voiced
    return out
