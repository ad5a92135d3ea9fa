"""Would an LPCNet-style linear-prediction mean offset help the teacher? Measured, not trained.

    python -m bench.lpc_offset --teacher CKPT [--data data/flite] [--clips 4] [--order 16]

LPCNet predicts each sample from the previous ``order`` samples with LPC coefficients computed from
the frame's spectral envelope, and lets the network model only what that leaves. For our teacher
the question is whether such an offset, added to its predicted mean, would carry information the
teacher has not already learned. On validation clips (teacher forcing, fp32, EMA weights):

- the LPC coefficients of each mel frame, by the teacher's own recipe (:class:`model.lpc.LPCFromMel`:
  mel power interpolated back onto the FFT bins, the autocorrelation as its inverse FFT with a 60 Hz
  Gaussian lag window and a 40 dB noise floor, Levinson-Durbin); the prediction uses the true past
  samples, as the offset would (for scale: the same from the recording's own STFT power, what an
  exact envelope would give);
- prediction gains (signal variance over residual variance, dB) of the LPC predictor and of the
  teacher's mean;
- "on top": the mean ``mu + b * (lpc - mu)`` with ``b`` fitted on half of the clips (weighted by
  the teacher's own 1 / scale^2, which makes it the NLL-optimal blend) and scored on the other half:
  the NLL change at the teacher's own scales. ``b`` near 0 and no NLL gain mean the teacher already
  has what linear prediction would give it.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys

import numpy as np

log = logging.getLogger(__name__)


def lp_of(audio: np.ndarray, a):
    """(T,) audio, LPC a_1..a_p (1, p, F) -> (T,) float64: x[t] predicted from x[t-1..t-p] with the
    coefficients of frame t // hop (:func:`model.lpc.lp_predict`, zeros before the clip)."""
    import torch

    from model.lpc import lp_predict

    x = torch.from_numpy(audio.astype(np.float32))[None]  # (1, T)
    hop = x.shape[-1] // a.shape[-1]
    return lp_predict(torch.nn.functional.pad(x[:, :-1], (1, 0)), a, hop)[0].double().numpy()  # (T,)


def gain_db(x: np.ndarray, pred: np.ndarray) -> float:
    return float(10 * np.log10(np.var(x) / max(np.var(x - pred), 1e-20)))


def nll(x: np.ndarray, mean: np.ndarray, log_scale: np.ndarray) -> float:
    z = (x - mean) * np.exp(-log_scale)
    return float(np.mean(0.5 * z * z + log_scale + 0.5 * math.log(2 * math.pi)))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--teacher", required=True, help="teacher checkpoint (.pt)")
    p.add_argument("--data", default="data/flite")
    p.add_argument("--clips", type=int, default=4, help="validation clips per speaker")
    p.add_argument("--order", type=int, default=16)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    import torch

    from bench.pitch_trackers import first_clips_per_speaker
    from core.excitation import excitation
    from model.data.config import AudioConfig
    from model.data.corpus import Corpus
    from model.data.dataset import load_clip, load_clip_f0
    from model.data.features import mel_filterbank, power_spectrogram
    from model.lpc import LPCFromMel
    from model.teacher import load_teacher

    torch.set_grad_enabled(False)
    teacher, ckpt = load_teacher(args.teacher)
    cfg = AudioConfig(
        **{k: v for k, v in ckpt["config"]["audio"].items() if k in AudioConfig.__dataclass_fields__}
    )
    corpus = Corpus(args.data)
    lpc = LPCFromMel(mel_filterbank(cfg), cfg.n_fft, cfg.sample_rate, args.order)
    chosen = first_clips_per_speaker(corpus, "val", args.clips)

    rows = []
    for clip_id in chosen:
        mel, audio = load_clip(corpus, clip_id, cfg)  # (n_mels, F), (F*hop,)
        f0 = load_clip_f0(corpus, clip_id, cfg, audio)  # (F,)
        exc = torch.from_numpy(excitation(f0, cfg.hop_length, cfg.sample_rate))[None]  # (1, 3, T)
        speaker = torch.tensor([corpus.speaker_id(clip_id)])
        mean, log_scale = teacher(
            torch.from_numpy(audio)[None], torch.from_numpy(mel)[None], speaker, excitation=exc
        )  # (1, T) each
        mu, ls = mean[0].double().numpy(), log_scale[0].double().numpy()
        pred = lp_of(audio, lpc(torch.from_numpy(mel)[None]))  # (T,) from the mel's LPC (1, p, F)
        power = torch.from_numpy(np.asarray(power_spectrogram(audio, cfg), dtype=np.float32))  # (F, n_bins)
        exact = lp_of(audio, lpc.from_power(power[None]))  # (T,) from the recording's own spectrum
        voiced = np.repeat(f0 > 0, cfg.hop_length)[: audio.shape[0]]  # (T,)
        rows.append(
            {"x": audio.astype(np.float64), "mu": mu, "ls": ls, "lpc": pred, "v": voiced, "exact": exact}
        )

    def joined(part: list[dict], key: str) -> np.ndarray:  # (sum of T,) over the clips of ``part``
        return np.concatenate([r[key] for r in part])

    fit, held = rows[0::2], rows[1::2]
    w = np.exp(-2 * joined(fit, "ls"))
    d = joined(fit, "lpc") - joined(fit, "mu")  # lpc - mu
    e = joined(fit, "x") - joined(fit, "mu")  # x - mu
    b = float((w * e * d).sum() / (w * d * d).sum())

    x, mu, ls, lpc, v, exact = (joined(held, k) for k in ("x", "mu", "ls", "lpc", "v", "exact"))
    blend = mu + b * (lpc - mu)
    lines = [
        f"lpc_offset: teacher {args.teacher} (step {ckpt.get('step')}), order {args.order}, "
        f"{len(chosen)} validation clips ({args.clips} per speaker), b fitted on {len(fit)}, scored on {len(held)}",
        "",
        "| samples | LPC gain (dB) | LPC gain, recording's own spectrum (dB) | teacher mean gain (dB) "
        "| teacher NLL (nats) | NLL with mu + b (lpc - mu) | change |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, m in (("all", np.ones_like(v)), ("voiced", v), ("unvoiced", ~v)):
        if not m.any():
            continue
        n0, n1 = nll(x[m], mu[m], ls[m]), nll(x[m], blend[m], ls[m])
        lines.append(
            f"| {name} ({m.mean():.0%}) | {gain_db(x[m], lpc[m]):.1f} | {gain_db(x[m], exact[m]):.1f} | "
            f"{gain_db(x[m], mu[m]):.1f} | "
            f"{n0:.3f} | {n1:.3f} | {n1 - n0:+.4f} |"
        )
    lines += ["", f"fitted b = {b:.4f} (0: the offset adds nothing to the teacher's mean; 1: replace it)"]
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
