"""The teacher's NLL on fixed windows of corpus splits: the trainer's validation number, and the
generalisation gap that says whether more training data would help.

    python -m model.validation.nll --checkpoint runs/flite/teacher/checkpoints/last.pt --data data/flite \
        [--splits train,val] [--clips 300] [--frames 80] [--batch 4]

For each split, ``--clips`` clips spread evenly over the split (every speaker, every part of it),
one fixed window of ``--frames`` frames each (the window of clip i depends only on (seed, i), as in
validation), scored with the checkpoint's EMA weights: Gaussian NLL in nats per sample. The gap is
``val - train``: near zero means the model does not fit its training clips better than unseen ones,
so at this size more clips of the same voices would not lower the validation NLL much (the model is
limited by its capacity or its training time); a large positive gap means it memorises, and more
data would help.

The excitation (a teacher with excitation channels) is built as the checkpoint was trained:
``excitation_phase`` of its training config ("f0", the runtime's F0-integrated phase, or
"recording", the phase-true one), unless ``--excitation-phase`` names the other.

:func:`windows_nll` is the one code path: ``parawave train teacher`` validates with it too.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from model.distributions import gaussian_nll

__all__ = [
    "even_indices",
    "main",
    "report",
    "sample_classes",
    "split_nll",
    "windows_nll",
    "windows_nll_by_class",
]


SILENCE_RMS = 0.003  # a frame whose recording has an RMS below this (about -50 dBFS) is "silent"
CLASSES = ("voiced", "unvoiced", "silent")


def sample_classes(audio: torch.Tensor, excitation: torch.Tensor, hop: int) -> torch.Tensor:
    """(B, T) class of every sample by its frame: 0 voiced, 1 unvoiced, 2 silent. audio (B, T) the
    recording, excitation (B, 3, T) [sin, cos, voiced]; T a multiple of ``hop``."""
    B, T = audio.shape
    rms = audio.float().reshape(B, T // hop, hop).pow(2).mean(-1).sqrt()  # (B, F)
    silent = (rms < SILENCE_RMS).repeat_interleave(hop, dim=-1)  # (B, T)
    voiced = excitation[:, 2] > 0.5  # (B, T)
    return torch.where(silent, 2, torch.where(voiced, 0, 1))  # (B, T)


@torch.no_grad()
def windows_nll_by_class(
    model: nn.Module, batches: Iterable[dict], device: torch.device, hop: int | None = None
) -> dict[str, tuple[float, int]]:
    """{"all": (sum of the per-sample Gaussian NLL, samples), and with an excitation (its voiced
    channel) and ``hop``: "voiced" / "unvoiced" / "silent" (see :func:`sample_classes`)} of ``model``
    (teacher forcing) over collated :class:`~model.data.dataset.VocoderDataset` batches."""
    sums = {"all": [0.0, 0]}
    for batch in batches:
        audio = batch["audio"].to(device)  # (B, T)
        excitation = batch.get("excitation")  # (B, 3, T) or None (a mel-only teacher)
        if excitation is not None:
            excitation = excitation.to(device)
        mean, log_scale = model(audio, batch["mel"].to(device), batch["speaker"].to(device), excitation)
        nll = gaussian_nll(audio, mean, log_scale, reduction="none")  # (B, T)
        sums["all"][0] += float(nll.sum())
        sums["all"][1] += audio.numel()
        if excitation is not None and hop:
            cls = sample_classes(audio, excitation, hop)  # (B, T)
            for i, name in enumerate(CLASSES):
                m = cls == i
                entry = sums.setdefault(name, [0.0, 0])
                entry[0] += float(nll[m].sum())
                entry[1] += int(m.sum())
    return {k: (v[0], v[1]) for k, v in sums.items()}


def windows_nll(model: nn.Module, batches: Iterable[dict], device: torch.device) -> tuple[float, int]:
    """(sum of the per-sample Gaussian NLL, number of samples) of ``model`` (teacher forcing) over
    collated :class:`~model.data.dataset.VocoderDataset` batches."""
    return windows_nll_by_class(model, batches, device)["all"]


def even_indices(n: int, k: int) -> list[int]:
    """``k`` indices spread evenly over ``range(n)`` (all of them when k >= n), first and last included."""
    if n <= 0 or k <= 0:
        return []
    if k >= n:
        return list(range(n))
    return sorted({int(i) for i in np.linspace(0, n - 1, k).round()})


def split_nll(
    model: nn.Module,
    corpus,
    split: str,
    audio_cfg,
    frames: int,
    clips: int,
    batch_size: int = 4,
    seed: int = 0,
    device: torch.device | str = "cpu",
    excitation_phase: str = "f0",
) -> dict:
    """NLL (nats per sample) of one window per clip on ``clips`` clips spread over ``split``:
    {"nll", "clips", "samples", "speakers": {speaker: its clips' NLL}}. ``excitation_phase``: see
    :class:`~model.data.dataset.VocoderDataset`."""
    from torch.utils.data import DataLoader, Subset

    from model.data.dataset import VocoderDataset, collate_vocoder

    excite = getattr(model.cfg, "excitation_channels", 0) > 0
    dataset = VocoderDataset(
        corpus, split, audio_cfg, frames, seed=seed, excitation=excite, excitation_phase=excitation_phase
    )
    chosen = even_indices(len(dataset), clips)
    if not chosen:
        raise ValueError(f"split {split!r} of {corpus.path} has no clips")
    by_speaker: dict[str, list[int]] = {}
    for i in chosen:
        by_speaker.setdefault(corpus.by_id[dataset.ids[i]].speaker, []).append(i)
    total, count, speakers = 0.0, 0, {}
    for speaker, indices in sorted(by_speaker.items()):
        loader = DataLoader(
            Subset(dataset, indices), batch_size=batch_size, shuffle=False, collate_fn=collate_vocoder
        )
        t, c = windows_nll(model, loader, torch.device(device))
        speakers[speaker] = t / c
        total, count = total + t, count + c
    return {"nll": total / count, "clips": float(len(chosen)), "samples": float(count), "speakers": speakers}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", type=Path, required=True, help="A teacher checkpoint (its EMA weights).")
    p.add_argument("--data", type=Path, required=True, help="The corpus folder it was trained on.")
    p.add_argument("--splits", default="train,val", help="Comma-separated splits (default train,val).")
    p.add_argument("--clips", type=int, default=300, help="Clips per split, spread evenly (default 300).")
    p.add_argument(
        "--frames", type=int, default=80, help="Window length in frames (default 80, as validation)."
    )
    p.add_argument("--batch", type=int, default=4, help="Windows per forward pass (default 4).")
    p.add_argument("--seed", type=int, default=0, help="Window seed (default 0, as validation).")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default).")
    p.add_argument(
        "--excitation-phase",
        default=None,
        help="f0 | recording: the excitation's phase (default: what the checkpoint was trained with).",
    )
    args = p.parse_args(argv)

    from model.checkpoint import UserError, check_kind, load_checkpoint
    from model.data.config import AudioConfig
    from model.data.corpus import SPLITS, Corpus, CorpusError
    from model.data.excitation import EXCITATION_PHASES
    from model.teacher import teacher_from_checkpoint

    try:
        splits = [s.strip() for s in args.splits.split(",") if s.strip()]
        unknown = [s for s in splits if s not in SPLITS]
        if not splits or unknown:
            raise UserError(
                f"--splits: unknown split(s) {unknown or args.splits!r}; choose from {list(SPLITS)}"
            )
        if args.clips <= 0 or args.frames <= 0 or args.batch <= 0:
            raise UserError("--clips, --frames and --batch must be positive")
        ckpt = check_kind(load_checkpoint(args.checkpoint), "teacher", args.checkpoint)
        try:
            corpus = Corpus(args.data)
        except CorpusError as exc:
            raise UserError(str(exc)) from None
        if args.threads > 0:
            torch.set_num_threads(args.threads)
        trained_phase = ckpt["config"].get("train", {}).get("excitation_phase", "f0")
        phase = args.excitation_phase or trained_phase
        if phase not in EXCITATION_PHASES:
            raise UserError(f"--excitation-phase must be one of {list(EXCITATION_PHASES)}, got {phase!r}")
        model = teacher_from_checkpoint(ckpt, ema=True)
        audio_cfg = AudioConfig.from_dict(ckpt["config"]["audio"])
        rows = {}
        for split in splits:
            try:
                rows[split] = split_nll(
                    model, corpus, split, audio_cfg, args.frames, args.clips, args.batch, args.seed,
                    excitation_phase=phase,
                )  # fmt: skip
            except ValueError as exc:
                raise UserError(str(exc)) from None
    except UserError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    excite = getattr(model.cfg, "excitation_channels", 0) > 0
    sys.stdout.write(
        report(rows, ckpt.get("step"), args.frames, audio_cfg.sample_rate, phase if excite else None)
    )
    return 0


def report(
    rows: dict[str, dict], step, frames: int, sample_rate: int, excitation_phase: str | None = None
) -> str:
    """The table ``main`` prints: one line per split (all its clips, then each speaker's), and the
    gap when train and val are both there."""
    speakers = sorted({s for r in rows.values() for s in r["speakers"]})
    phase = f", {excitation_phase}-phase excitation" if excitation_phase else ""
    lines = [
        f"teacher step {step}, one {frames}-frame window per clip, EMA weights{phase}",
        "\t".join(["split", "clips", "seconds", "nll", *(f"nll {s}" for s in speakers)]),
    ]
    for split, r in rows.items():
        per = "\t".join(f"{r['speakers'][s]:.4f}" if s in r["speakers"] else "" for s in speakers)
        lines.append(f"{split}\t{int(r['clips'])}\t{r['samples'] / sample_rate:.0f}\t{r['nll']:.4f}\t{per}")
    if "train" in rows and "val" in rows:
        lines.append(f"gap (val - train)\t\t\t{rows['val']['nll'] - rows['train']['nll']:+.4f}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
