"""Learned text-to-mel alignment: monotonic alignment search (MAS), the aligner and its losses.

The recipe follows the "one TTS alignment" idea (RAD-TTS / FastPitch aligner): two small conv
encoders embed phonemes and mel frames, attention logits are negative squared L2 distances
between them, and

* a forward-sum loss (CTC with one blank over the soft alignment) teaches the soft attention to
  be monotonic and to cover every phoneme,
* MAS turns the soft attention into a hard monotonic alignment (each frame -> exactly one
  phoneme, phonemes in order, every phoneme >= 1 frame when there are enough frames); its column
  sums are the phoneme durations the length regulator and the duration predictor are trained on,
* after a warm-up, a binarisation loss (-log soft attention on the hard path) pulls the soft
  alignment onto the hard one.

A static beta-binomial prior over the diagonal speeds up convergence early in training.

MAS runs on the CPU with numba when it is importable (~1 ms for a batch of 16 utterances), and
otherwise with a numpy implementation vectorised over the batch and the phoneme axis (one Python
iteration per frame, not per cell) -- the GPU host has no numba.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)

try:  # numba is optional (missing on the GPU host); the numpy fallback is vectorised
    import numba

    HAVE_NUMBA = True
except ImportError:  # pragma: no cover - depends on the install
    numba = None
    HAVE_NUMBA = False

_NEG = -1e30  # "minus infinity" that survives float arithmetic in the DP


# ---------------------------------------------------------------------------------------------
# Monotonic alignment search
# ---------------------------------------------------------------------------------------------


def _even_split(n_frames: int, n_text: int) -> np.ndarray:
    """Frame -> phoneme index when there are fewer frames than phonemes (some phonemes get 0)."""
    return (np.arange(n_frames) * n_text) // max(n_frames, 1)


def _mas_numpy(value: np.ndarray, text_lens: np.ndarray, mel_lens: np.ndarray) -> np.ndarray:
    """Vectorised MAS. value (B, F, L) float64 -> path (B, F, L) uint8."""
    B, Fm, Lm = value.shape
    j_idx = np.arange(Lm)[None, :]  # (1, L)
    v = np.where(j_idx[:, None, :] < text_lens[:, None, None], value, _NEG)  # (B, F, L)
    q = np.full((B, Fm, Lm), _NEG, dtype=np.float64)  # best score of a path ending in (i, j)
    q[:, 0, 0] = v[:, 0, 0]
    for i in range(1, Fm):
        prev = q[:, i - 1]  # (B, L)
        moved = np.concatenate([np.full((B, 1), _NEG), prev[:, :-1]], axis=1)  # from j-1
        q[:, i] = np.maximum(prev, moved) + v[:, i]
    path = np.zeros((B, Fm, Lm), dtype=np.uint8)
    rows = np.arange(B)
    j = text_lens - 1  # (B,) every path ends on the last phoneme at the last frame
    for i in range(Fm - 1, -1, -1):
        active = i < mel_lens  # (B,)
        path[rows[active], i, j[active]] = 1
        if i == 0:
            break
        stay = q[rows, i - 1, j]
        move = q[rows, i - 1, np.maximum(j - 1, 0)]
        step = active & (j > 0) & ((j == i) | (move >= stay))
        j = j - step.astype(j.dtype)
    return path


if HAVE_NUMBA:

    @numba.njit(cache=True, nogil=True)
    def _mas_numba(value, text_lens, mel_lens):  # pragma: no cover - compiled
        B, Fm, Lm = value.shape
        path = np.zeros((B, Fm, Lm), dtype=np.uint8)
        for b in range(B):
            T = mel_lens[b]
            N = text_lens[b]
            q = np.full((T, N), _NEG)
            q[0, 0] = value[b, 0, 0]
            for i in range(1, T):
                # j <= i: a path cannot be past phoneme i at frame i
                for j in range(min(N, i + 1)):
                    stay = q[i - 1, j]
                    move = q[i - 1, j - 1] if j > 0 else _NEG
                    q[i, j] = max(stay, move) + value[b, i, j]
            j = N - 1
            for i in range(T - 1, -1, -1):
                path[b, i, j] = 1
                if i > 0 and j > 0 and (j == i or q[i - 1, j - 1] >= q[i - 1, j]):
                    j -= 1
        return path


def maximum_path(
    value: np.ndarray, text_lens: np.ndarray, mel_lens: np.ndarray, use_numba: bool | None = None
) -> np.ndarray:
    """Hard monotonic alignment maximising the summed ``value`` along the path.

    value: (B, F, L) scores (log attention); text_lens, mel_lens: (B,) valid lengths.
    Returns path (B, F, L) uint8: for every valid frame exactly one phoneme, non-decreasing in
    time with steps of 0 or 1, starting at phoneme 0 and ending at phoneme text_len-1, so every
    phoneme gets >= 1 frame and durations sum to mel_len. When mel_len < text_len (no such path)
    the frames are spread evenly and some phonemes get 0 frames.
    """
    value = np.ascontiguousarray(value, dtype=np.float64)
    text_lens = np.asarray(text_lens, dtype=np.int64)
    mel_lens = np.asarray(mel_lens, dtype=np.int64)
    if value.ndim != 3 or value.shape[0] != len(text_lens) or len(text_lens) != len(mel_lens):
        raise ValueError(f"value must be (B, F, L) with B lengths, got {value.shape}")
    if (text_lens < 1).any() or (mel_lens < 1).any():
        raise ValueError("text and mel lengths must be >= 1")
    if (text_lens > value.shape[2]).any() or (mel_lens > value.shape[1]).any():
        raise ValueError("lengths exceed the value matrix")
    short = mel_lens < text_lens
    ok = ~short
    path = np.zeros(value.shape, dtype=np.uint8)
    if ok.any():
        numba_ok = HAVE_NUMBA if use_numba is None else (use_numba and HAVE_NUMBA)
        fn = _mas_numba if numba_ok else _mas_numpy
        path[ok] = fn(value[ok], text_lens[ok], mel_lens[ok])
    for b in np.flatnonzero(short):  # rare degenerate case: fewer frames than phonemes
        T = int(mel_lens[b])
        path[b, np.arange(T), _even_split(T, int(text_lens[b]))] = 1
    return path


@torch.no_grad()
def hard_alignment(log_attn: torch.Tensor, text_lens: torch.Tensor, mel_lens: torch.Tensor) -> torch.Tensor:
    """MAS on a torch log-attention (B, F, L) -> float hard alignment (B, F, L) on the same device."""
    path = maximum_path(
        log_attn.detach().float().cpu().numpy(), text_lens.cpu().numpy(), mel_lens.cpu().numpy()
    )
    return torch.from_numpy(path).to(device=log_attn.device, dtype=log_attn.dtype)


# ---------------------------------------------------------------------------------------------
# Prior and losses
# ---------------------------------------------------------------------------------------------


@torch.no_grad()
def beta_binomial_log_prior(
    text_lens: torch.Tensor, mel_lens: torch.Tensor, n_frames: int, n_text: int, scaling: float = 1.0
) -> torch.Tensor:
    """Log of a beta-binomial prior concentrated around the diagonal, (B, F, L).

    For frame i (1-based) of T and phoneme k of N, P(k) = BetaBinomial(k; n=N-1, a=s*i,
    b=s*(T-i+1)). Invalid cells are 0 (they are masked by the caller).
    """
    dev = text_lens.device
    n = (text_lens.float() - 1.0).view(-1, 1, 1)  # (B, 1, 1)
    T = mel_lens.float().view(-1, 1, 1)  # (B, 1, 1)
    k = torch.arange(n_text, device=dev, dtype=torch.float32).view(1, 1, -1)  # (1, 1, L)
    i = torch.arange(1, n_frames + 1, device=dev, dtype=torch.float32).view(1, -1, 1)  # (1, F, 1)
    a = scaling * i  # (1, F, 1)
    b = scaling * (T - i + 1).clamp(min=1.0)  # (B, F, 1)
    kk = torch.minimum(k, n)  # keep lgamma arguments valid outside the mask

    def lbeta(x, y):
        return torch.lgamma(x) + torch.lgamma(y) - torch.lgamma(x + y)

    log_comb = torch.lgamma(n + 1) - torch.lgamma(kk + 1) - torch.lgamma(n - kk + 1)  # (B, 1, L)
    logp = log_comb + lbeta(kk + a, n - kk + b) - lbeta(a, b)  # (B, F, L)
    valid = (k <= n) & (i <= T)  # (B, F, L)
    return torch.where(valid, logp, torch.zeros_like(logp))


def forward_sum_loss(
    attn_logits: torch.Tensor, text_lens: torch.Tensor, mel_lens: torch.Tensor, blank_logit: float = -1.0
) -> torch.Tensor:
    """CTC-style forward-sum loss: the likelihood of all monotonic paths through the phonemes.

    attn_logits: (B, F, L) unnormalised attention scores. A blank class with a constant logit is
    added (index 0), the targets are the phoneme positions 1..L, so CTC sums over every monotonic
    alignment that visits each phoneme at least once. Mean over the batch of the per-phoneme loss.
    """
    B, Fm, Lm = attn_logits.shape
    text_mask = torch.arange(Lm, device=attn_logits.device)[None, :] < text_lens[:, None]  # (B, L)
    logits = attn_logits.float().masked_fill(~text_mask[:, None, :], -1e4)  # (B, F, L)
    blank = torch.full((B, Fm, 1), blank_logit, device=logits.device, dtype=logits.dtype)
    logp = torch.log_softmax(torch.cat([blank, logits], dim=2), dim=2)  # (B, F, L+1)
    targets = torch.arange(1, Lm + 1, device=logits.device).expand(B, Lm)  # (B, L)
    return F.ctc_loss(
        logp.transpose(0, 1),  # (F, B, L+1)
        targets,
        mel_lens.long(),
        text_lens.long(),
        blank=0,
        reduction="mean",  # per-target-length, then batch mean
        zero_infinity=True,
    )


def binarization_loss(hard: torch.Tensor, soft: torch.Tensor) -> torch.Tensor:
    """-mean log soft attention on the hard path; hard, soft: (B, F, L)."""
    logp = torch.log(soft.clamp(min=1e-12))
    return -(hard * logp).sum() / hard.sum().clamp(min=1.0)


# ---------------------------------------------------------------------------------------------
# Aligner module
# ---------------------------------------------------------------------------------------------


class Aligner(nn.Module):
    """Attention between phoneme embeddings and mel frames from negative squared L2 distances."""

    def __init__(self, text_dim: int, n_mels: int, channels: int, temperature: float) -> None:
        super().__init__()
        self.temperature = temperature
        self.text_proj = nn.Sequential(
            nn.Conv1d(text_dim, 2 * text_dim, 3, padding=1),
            nn.ReLU(),
            nn.Conv1d(2 * text_dim, channels, 1),
        )
        self.mel_proj = nn.Sequential(
            nn.Conv1d(n_mels, 2 * channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv1d(2 * channels, channels, 1),
            nn.ReLU(),
            nn.Conv1d(channels, channels, 1),
        )

    def forward(
        self,
        text_emb: torch.Tensor,  # (B, D, L)
        mel: torch.Tensor,  # (B, n_mels, F), normalised
        text_mask: torch.Tensor,  # (B, L) bool
        log_prior: torch.Tensor | None = None,  # (B, F, L)
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns (logits, soft attention, log soft attention), each (B, F, L); the soft rows sum to
        1 over the valid phonemes. MAS should run on the log attention as returned: taking the log
        of ``soft`` clamps far-off phonemes to one value, and the ties that makes bias the path."""
        keys = self.text_proj(text_emb)  # (B, C, L)
        queries = self.mel_proj(mel)  # (B, C, F)
        # ||q - k||^2 = q.q - 2 q.k + k.k
        dist = (
            (queries**2).sum(1)[:, :, None]  # (B, F, 1)
            - 2 * torch.bmm(queries.transpose(1, 2), keys)  # (B, F, L)
            + (keys**2).sum(1)[:, None, :]  # (B, 1, L)
        )
        logits = -self.temperature * dist  # (B, F, L)
        scores = torch.log_softmax(logits.masked_fill(~text_mask[:, None, :], -1e4), dim=2)
        if log_prior is not None:
            scores = scores + log_prior
        log_soft = torch.log_softmax(scores.masked_fill(~text_mask[:, None, :], -1e4), dim=2)  # (B, F, L)
        return logits, log_soft.exp(), log_soft
