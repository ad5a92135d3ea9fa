"""A/B of vocoder checkpoints on copy synthesis: ``python -m evaluation.copy_ab --data CORPUS A.pt B.pt``.

For the first ``--limit`` clips per speaker of a split, every checkpoint vocodes the recording's
log-mel (and, for a vocoder with excitation, the recording's Praat F0) with the same noise; the
table compares PESQ-WB, STOI, HNR (Praat harmonicity) and the output's F0 error / voicing error
against the recording. The models run in PyTorch (checkpoints, not bundles), so an A/B needs no
export; what is served is measured by ``parawave eval``. Students and teachers alike: a teacher
checkpoint generates autoregressively (``TeacherWaveNet.generate``, the same noise scaled by
``--temperature``), so a teacher that cannot be exported yet (the LP teacher, issue 38) is scored
the same way as one that can.
"""

from __future__ import annotations

import argparse
import logging
import math
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


def copy_metrics(
    models: dict[str, tuple], corpus, clip_ids: list[str], cfg, seed: int = 0, temperature: float = 1.0
) -> dict[str, dict]:
    """models: label -> (student or teacher, speaker name -> id). Returns label -> mean metrics (and
    "reference"). Teachers sample at ``temperature``."""
    import torch

    from core.excitation import excitation
    from evaluation.clips import clip_seed
    from evaluation.copy_synthesis import copy_scores
    from evaluation.voicing import hnr_db
    from model.data.dataset import load_clip
    from model.data.pitch import track_f0

    rows: dict[str, list[dict]] = {label: [] for label in models}
    ref_hnr = []
    for clip_id in clip_ids:
        mel, audio = load_clip(corpus, clip_id, cfg)  # (n_mels, F), (F*hop,)
        f0 = track_f0(audio, cfg)  # (F,)
        ref_hnr.append(hnr_db(audio, cfg.sample_rate))
        speaker = corpus.by_id[clip_id].speaker
        g = torch.Generator().manual_seed(clip_seed(seed, clip_id))
        z = torch.randn(1, audio.shape[0], generator=g)  # (1, T): the same noise for every model
        for label, (model, speakers) in models.items():
            exc = None
            if model.cfg.excitation_channels:
                exc = torch.from_numpy(excitation(f0, cfg.hop_length, cfg.sample_rate))[None]  # (1, 3, T)
            spk = torch.tensor([speakers.get(speaker, 0)])
            with torch.no_grad():
                if hasattr(model, "generate"):  # a teacher: autoregressive, the same noise
                    out = model.generate(
                        torch.from_numpy(mel)[None], spk, excitation=exc, noise=z, temperature=temperature
                    )[0].numpy()  # (T,)
                else:
                    out = model(z, torch.from_numpy(mel)[None], spk, excitation=exc)[0].numpy()  # (T,)
            rows[label].append(copy_scores(audio, out, f0, cfg))
    summary = {"reference": {"clips": len(clip_ids), "hnr_db": float(np.nanmean(ref_hnr))}}
    for label, rs in rows.items():
        summary[label] = {"clips": len(rs)} | {k: float(np.nanmean([r[k] for r in rs])) for k in rs[0]}
    return summary


def first_clips(corpus, split: str, limit: int) -> list[str]:
    """The first ``limit`` clips per speaker of ``split``, in corpus order."""
    taken: dict[str, int] = {}
    ids = []
    for clip_id in corpus.ids(split):
        spk = corpus.by_id[clip_id].speaker
        if taken.get(spk, 0) < limit:
            taken[spk] = taken.get(spk, 0) + 1
            ids.append(clip_id)
    return ids


def markdown(summary: dict[str, dict]) -> str:
    def f(x, spec):
        return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)

    lines = [
        "| system | clips | PESQ-WB | STOI | HNR (dB) | F0 error (cents) | voicing error |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label, m in summary.items():
        lines.append(
            f"| {label} | {m['clips']} | {f(m.get('pesq_wb'), '.2f')} | {f(m.get('stoi'), '.3f')} | "
            f"{f(m.get('hnr_db'), '.1f')} | {f(m.get('f0_rmse_cents'), '.0f')} | {f(m.get('voicing_error'), '.3f')} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    import torch

    from model.data.config import AudioConfig
    from model.data.corpus import Corpus
    from model.student import student_from_checkpoint
    from model.teacher import teacher_from_checkpoint

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "checkpoints", nargs="+", type=Path, help="student or teacher checkpoints (label = file stem)"
    )
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--limit", type=int, default=8, help="clips per speaker")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--temperature", type=float, default=1.0, help="teachers' sampling temperature")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    corpus = Corpus(args.data)
    models, cfg = {}, None
    for path in args.checkpoints:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)  # weights + config + step
        cfg = AudioConfig.from_dict(ckpt["config"]["audio"])
        speakers = {s: i for i, s in enumerate(ckpt["config"]["data"]["speakers"])}
        build = teacher_from_checkpoint if ckpt.get("kind") == "teacher" else student_from_checkpoint
        models[path.stem] = (build(ckpt), speakers)
    ids = first_clips(corpus, args.split, args.limit)
    print(
        markdown(copy_metrics(models, corpus, ids, cfg, args.seed, args.temperature))
    )  # the report is the output


if __name__ == "__main__":
    main()
