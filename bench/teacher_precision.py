"""What the teacher's training hygiene buys, measured on a checkpoint (issue 38):

    python -m bench.teacher_precision --checkpoint CKPT --data data/flite [--clips 48] [--frames 80]

Validation NLL (nats per sample; all, voiced, unvoiced and silent frames) of one checkpoint on fixed
windows of the val split (:func:`model.validation.nll.windows_nll_by_class`, the trainer's validation code),
scored four ways:

- ``ema, fp32``: the EMA weights, everything in fp32 (the reference);
- ``ema, bf16 + fp32 io``: under CPU bf16 autocast as the trainer runs it, with the input conv and the
  output head in fp32 (``TeacherConfig.fp32_io``, the default);
- ``ema, bf16 everywhere``: the same with the input conv and the head under autocast too;
- ``raw, bf16 + fp32 io``: the optimiser's weights instead of their EMA.

The differences between rows are what fp32 at the ends and the EMA are worth *at inference* on a
trained model; a training-time A/B of fp32_io is a separate (costlier) measurement.
"""

from __future__ import annotations

import argparse
import itertools
import logging
from dataclasses import replace
from pathlib import Path

import torch

log = logging.getLogger(__name__)


def score(model, corpus, audio_cfg, train_cfg: dict, clips: int, frames: int, bf16: bool) -> dict[str, float]:
    from torch.utils.data import DataLoader, Subset

    from model.data.dataset import VocoderDataset, collate_vocoder
    from model.validation.nll import even_indices, windows_nll_by_class

    dataset = VocoderDataset(
        corpus,
        "val",
        audio_cfg,
        frames,
        seed=0,
        excitation=model.cfg.excitation_channels > 0,
        excitation_phase=train_cfg.get("excitation_phase", "f0"),
    )
    subset = Subset(dataset, even_indices(len(dataset), clips))
    loader = DataLoader(subset, batch_size=4, shuffle=False, collate_fn=collate_vocoder)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        sums = windows_nll_by_class(
            model, itertools.islice(loader, None), torch.device("cpu"), audio_cfg.hop_length
        )
    return {k: s / n for k, (s, n) in sums.items() if n}


def main(argv: list[str] | None = None) -> None:
    from model.data.config import AudioConfig
    from model.data.corpus import Corpus
    from model.teacher import TeacherConfig, TeacherWaveNet

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--clips", type=int, default=48)
    p.add_argument("--frames", type=int, default=80)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(1)
    ckpt = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
    cfg = TeacherConfig.from_dict(ckpt["config"]["model"])
    audio_cfg = AudioConfig.from_dict(ckpt["config"]["audio"])
    corpus = Corpus(args.data)
    rows = {}
    for label, weights, bf16, fp32_io in (
        ("ema, fp32", "ema", False, True),
        ("ema, bf16 + fp32 io", "ema", True, True),
        ("ema, bf16 everywhere", "ema", True, False),
        ("raw, bf16 + fp32 io", "model", True, True),
    ):
        model = TeacherWaveNet(replace(cfg, fp32_io=fp32_io))
        model.load_state_dict(ckpt[weights])
        model.eval()
        rows[label] = score(model, corpus, audio_cfg, ckpt["config"]["train"], args.clips, args.frames, bf16)
        log.info("%s: %s", label, rows[label])
    classes = [c for c in ("all", "voiced", "unvoiced", "silent") if c in rows["ema, fp32"]]
    out = [
        f"checkpoint {args.checkpoint} (step {ckpt.get('step')}), {args.clips} val windows of {args.frames} frames",
        "",
        "| scored as | " + " | ".join(f"NLL {c}" for c in classes) + " |",
        "|---|" + "---:|" * len(classes),
    ]
    for label, r in rows.items():
        out.append(f"| {label} | " + " | ".join(f"{r[c]:.4f}" for c in classes) + " |")
    print("\n".join(out))  # the report is the output


if __name__ == "__main__":
    main()
