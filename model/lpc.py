"""Linear prediction from the mel: the teacher's LPC mean (issue 38), in torch.

LPCNet, LP-WaveNet and ExcitNet let a linear predictor carry the spectral envelope and train the
network on what it leaves (the excitation). Here, per mel frame:

    log-mel (n_mels,) -> mel power exp(2 mel) -> power spectrum on the FFT bins (each bin the
    filterbank-weighted average of its bands' per-bin power) -> a floor 40 dB below the frame's peak
    -> autocorrelation r_0..r_p (the inverse real FFT, as a cosine matrix) -> a 60 Hz Gaussian lag
    window and a 1.0001 white-noise correction on r_0 -> Levinson-Durbin -> a_1..a_p

and each sample t of frame f = t // hop is predicted as ``lp_t = -sum_k a_k[f] x_{t-k}``. Every step
is a matmul or an elementwise op with a fixed unrolled loop of ``order`` iterations, so the same
function traces into an ONNX conditioning graph. The measurement that came first
(``bench.lpc_offset``, which uses this module) found this predictor removes ~21 dB of the signal's
variance on flite voices, as much as LPC from the recording's exact spectrum.

The predictor itself is a deterministic function of the mel and of the past samples: no parameters,
no gradient (the network learns around it).

Precision: the mel -> coefficients recipe runs in float64 (the result is float32). Levinson-Durbin
on a peaky spectrum (autocorrelation matrices with condition numbers up to ~1e4, bounded by the
white-noise correction) turns float32 rounding of the lags into ~1e-3 errors in the coefficients,
so two float32 implementations (PyTorch's and the exported ``teacher_cond`` graph run by ONNX
Runtime) disagreed by that much; in float64 they agree to float32 rounding. A few hundred flops per
frame: free next to the network.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["LPCFromMel", "lp_predict", "lp_step"]

LAG_WINDOW_HZ = 60.0
FLOOR_DB = 40.0
WHITE_NOISE = 1.0001


def _mel_to_bins(fb: np.ndarray) -> np.ndarray:
    """(n_mels, n_bins) filterbank -> (n_mels, n_bins) matrix M with power = mel_power @ M."""
    band = np.maximum(fb.sum(1, keepdims=True), 1e-12)  # (n_mels, 1)
    weights = np.maximum(fb.sum(0, keepdims=True), 1e-12)  # (1, n_bins)
    return fb / band / weights


def _cosine_matrix(n_fft: int, order: int) -> np.ndarray:
    """(n_bins, order+1) C with r = power @ C the (unnormalised) inverse real FFT's first lags."""
    n_bins = n_fft // 2 + 1
    b = np.arange(n_bins)[:, None]
    k = np.arange(order + 1)[None, :]
    c = 2.0 * np.cos(2.0 * np.pi * b * k / n_fft)  # (n_bins, order+1)
    c[0] *= 0.5  # DC and Nyquist appear once in the full spectrum
    c[-1] *= 0.5
    return c / n_fft


class LPCFromMel(nn.Module):
    """log-mel (B, n_mels, F) -> LPC coefficients a_1..a_p (B, p, F), fp32 (computed in fp64), no gradient."""

    def __init__(self, filterbank: np.ndarray, n_fft: int, sample_rate: int, order: int):
        super().__init__()
        if order < 1:
            raise ValueError(f"LPC order must be >= 1, got {order}")
        self.order = order
        lag = np.exp(-0.5 * (2 * np.pi * LAG_WINDOW_HZ * np.arange(order + 1) / sample_rate) ** 2)
        lag[0] *= WHITE_NOISE
        self.register_buffer(
            "to_bins", torch.tensor(_mel_to_bins(filterbank), dtype=torch.float32), persistent=False
        )
        self.register_buffer(
            "to_lags",
            torch.tensor(_cosine_matrix(n_fft, order) * lag[None], dtype=torch.float32),
            persistent=False,
        )
        self._floor = 10.0 ** (-FLOOR_DB / 10.0)

    def autocorrelation(self, mel: Tensor) -> Tensor:
        """(B, n_mels, F) log-mel -> (B, F, p+1) lag-windowed autocorrelation, float64."""
        mel_power = torch.exp(2.0 * mel.double()).transpose(1, 2)  # (B, F, n_mels)
        return self.power_autocorrelation(mel_power @ self.to_bins.double())  # (B, F, p+1)

    def power_autocorrelation(self, power: Tensor) -> Tensor:
        """(B, F, n_bins) power spectrum -> (B, F, p+1): the floor, then the lag-windowed lags (in
        ``power``'s dtype)."""
        power = torch.maximum(power, power.amax(-1, keepdim=True) * self._floor)  # (B, F, n_bins)
        return power @ self.to_lags.to(power.dtype)  # (B, F, p+1)

    def forward(self, mel: Tensor) -> Tensor:
        with torch.no_grad(), torch.autocast(device_type=mel.device.type, enabled=False):
            r = self.autocorrelation(mel)  # (B, F, p+1), float64
            return levinson(r).float().transpose(1, 2).contiguous()  # (B, p, F)

    def from_power(self, power: Tensor) -> Tensor:
        """The same recipe from a power spectrum (B, F, n_bins) (e.g. the recording's own STFT, the
        exact envelope) instead of the mel -> (B, p, F)."""
        with torch.no_grad():
            r = self.power_autocorrelation(power.double())  # (B, F, p+1)
            return levinson(r).float().transpose(1, 2).contiguous()


def levinson(r: Tensor) -> Tensor:
    """Levinson-Durbin on the last axis: r (..., p+1) -> a_1..a_p (...,p) of A(z) = 1 + sum a_k z^-k.

    Written as ``order`` iterations of whole-tensor ops (no data-dependent control flow)."""
    p = r.shape[-1] - 1
    err = r[..., 0]  # (...)
    a = r.new_zeros(*r.shape[:-1], 0)  # (..., i-1): a_1..a_{i-1}
    for i in range(1, p + 1):
        acc = r[..., i] + (a * r[..., 1:i].flip(-1)).sum(-1)  # (...)
        k = -acc / err  # (...): the reflection coefficient
        a = torch.cat([a + k.unsqueeze(-1) * a.flip(-1), k.unsqueeze(-1)], dim=-1)  # (..., i)
        err = err * (1.0 - k * k)
    return a


def lp_predict(x_in: Tensor, a: Tensor, hop: int) -> Tensor:
    """Teacher forcing: the linear prediction of every sample from the ones before it.

    x_in (B, T) the already shifted input (x_in[:, t] = x[t - 1]), a (B, p, F) per-frame
    coefficients with T == F * hop -> (B, T) with out[:, t] = -sum_k a_k[t // hop] x[t - k]
    (zeros before the window, as the queues of :func:`lp_step` start)."""
    _, p, n_frames = a.shape
    T = x_in.shape[-1]
    if n_frames * hop != T:
        raise ValueError(f"{T} samples but {n_frames} frames * hop {hop}")
    a_t = a.repeat_interleave(hop, dim=-1)  # (B, p, T): frame hold
    padded = torch.nn.functional.pad(x_in.float(), (p - 1, 0))  # (B, p-1+T)
    past = padded.unfold(-1, p, 1).flip(-1).transpose(1, 2)  # (B, p, T): past[:, k-1, t] = x[t-k]
    return -(a_t * past).sum(1)  # (B, T)


def lp_step(history: Tensor, a_t: Tensor) -> Tensor:
    """One sample: history (B, p) = [x_{t-1}, ..., x_{t-p}], a_t (B, p) -> (B,) prediction."""
    return -(a_t * history).sum(-1)


def prediction_gain_db(x: Tensor, prediction: Tensor) -> float:
    """Signal variance over residual variance, dB (for reports and tests)."""
    residual = (x - prediction).float()
    return 10.0 * math.log10(float(x.float().pow(2).mean()) / max(float(residual.pow(2).mean()), 1e-20))
