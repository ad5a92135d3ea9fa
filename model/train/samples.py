"""TensorBoard figures and audio samples (matplotlib and the data pipeline imported lazily)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn


def plot_mels(mels: dict[str, Any], title: str | None = None):
    """A matplotlib (Agg) figure with one log-mel image (n_mels, F) per entry, stacked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(len(mels), 1, figsize=(8, 2.2 * len(mels)), squeeze=False)
    for ax, (name, mel) in zip(axes[:, 0], mels.items(), strict=True):
        mel = mel.detach().float().cpu().numpy() if isinstance(mel, Tensor) else np.asarray(mel)
        im = ax.imshow(mel, origin="lower", aspect="auto", interpolation="none")
        ax.set_title(name, fontsize=9)
        fig.colorbar(im, ax=ax)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def log_vocoder_sample(
    model: nn.Module,
    writer,
    step: int,
    device: torch.device,
    *,
    corpus,
    split: str,
    audio_cfg,
    sample_seconds: float,
    temperature: float,
    audio_tag: str,
    label: str,
) -> None:
    """A vocoder's (teacher's or student's) TensorBoard sample: ``model.generate`` on the first
    ``sample_seconds`` of the first clip of ``split``, logged as audio ``sample/real`` and
    ``audio_tag``, and a figure ``sample/mel`` of the real mel and the generated one (``label``)."""
    import numpy as np

    from model.data.dataset import load_clip
    from model.data.features import log_mel

    clip_id = corpus.ids(split)[0]
    mel, audio = load_clip(corpus, clip_id, audio_cfg)  # (n_mels, F), (F*hop,)
    frames = max(1, min(mel.shape[1], round(sample_seconds * audio_cfg.frame_rate)))
    mel, audio = mel[:, :frames], audio[: frames * audio_cfg.hop_length]
    speaker = torch.tensor([corpus.speaker_id(clip_id)], device=device)
    extra = {}
    if getattr(getattr(model, "cfg", None), "excitation_channels", 0):  # pitch-excited vocoder
        from model.data.dataset import clip_excitation

        extra["excitation"] = clip_excitation(corpus, clip_id, audio_cfg, frames).to(device)
    generated = (
        model.generate(
            torch.from_numpy(mel)[None].to(device),
            speaker,
            temperature=temperature,
            seed=step,
            **extra,
        )[0]
        .float()
        .cpu()
    )  # (T,)
    sr = audio_cfg.sample_rate
    writer.add_audio("sample/real", torch.from_numpy(audio)[None], step, sample_rate=sr)
    writer.add_audio(audio_tag, generated[None], step, sample_rate=sr)
    gen_mel = log_mel(generated.numpy().astype(np.float32), audio_cfg)
    fig = plot_mels({f"real {clip_id}": mel, label: gen_mel}, title=f"step {step}")
    writer.add_figure("sample/mel", fig, step)
