"""The figures of ``parawave eval``: stacked log-mel spectrograms of one clip, and predicted vs
reference durations."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from evaluation.clips import ClipResult
from evaluation.metrics import DURATION_TOLERANCE


def plot_spectrograms(path: Path, cfg, panels: Sequence[tuple[str, np.ndarray]], title: str) -> None:
    """One log-mel image per (label, audio (T,)) panel, stacked, on a shared colour scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from model.data.features import log_mel

    mels = [log_mel(a, cfg) for _, a in panels]  # (n_mels, F_i) each
    vmax = max(float(m.max()) for m in mels if m.size)
    fig, axes = plt.subplots(  # one time axis for all: a text->audio that is too short looks short
        len(panels),
        1,
        figsize=(10, 2.0 * len(panels) + 0.6),
        squeeze=False,
        sharex=True,
        layout="constrained",
    )
    for ax, (label, _), m in zip(axes[:, 0], panels, mels, strict=True):
        t = m.shape[1] * cfg.hop_length / cfg.sample_rate
        im = ax.imshow(
            m, origin="lower", aspect="auto", extent=(0, t, 0, m.shape[0]), vmin=vmax - 12, vmax=vmax
        )
        ax.set_title(label, fontsize=9)
        ax.set_ylabel("mel band")
    axes[-1, 0].set_xlim(0, max(m.shape[1] for m in mels) * cfg.hop_length / cfg.sample_rate)
    axes[-1, 0].set_xlabel("seconds")
    fig.colorbar(im, ax=axes[:, 0].tolist(), label="log magnitude")
    fig.suptitle(title, fontsize=10)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_durations(path: Path, results: Sequence[ClipResult]) -> None:
    """Predicted (student text->audio) vs reference clip duration, one colour per speaker."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 5))
    for spk in sorted({r.speaker for r in results}):
        rs = [r for r in results if r.speaker == spk and "student" in r.tts_seconds]
        ax.scatter([r.reference_seconds for r in rs], [r.tts_seconds["student"] for r in rs], s=14, label=spk)
    top = max(
        [r.reference_seconds for r in results] + [max(r.tts_seconds.values(), default=0) for r in results]
    )
    x = np.array([0.0, top * 1.05])
    ax.plot(x, x, "k-", lw=0.8, label="equal")
    for f in (1 - DURATION_TOLERANCE, 1 + DURATION_TOLERANCE):
        ax.plot(x, f * x, "k--", lw=0.6)
    ax.set_xlabel("reference duration (s)")
    ax.set_ylabel("predicted duration, student text->audio (s)")
    ax.set_title(f"durations (dashed: ±{DURATION_TOLERANCE:.0%})", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
