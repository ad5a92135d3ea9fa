"""Does a vocoder's pitch follow its F0 excitation, or only the mel and its own past?

    python -m bench.excitation_follow --voice voices/flite [--data data/flite] [--limit 1]
        [--models teacher,student] [--shift 150] [--temperature 0.4]

Copy synthesis of the first ``--limit`` validation clips per speaker from the recording's log-mel
and three excitations: the recording's Praat F0, and that F0 scaled by 2^(-shift/1200) and
2^(+shift/1200) (the mel unchanged, the same noise draws). Printed per clip and model: the median
absolute F0 error of the unshifted run against the recording, and the median pitch change of each
shifted run against the unshifted one (all in cents, frames voiced in all three and in the
recording). A vocoder steered by its excitation moves by about +-shift; one that ignores it by ~0.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging

import numpy as np

log = logging.getLogger(__name__)


def median_abs_cents(out: np.ndarray, ref: np.ndarray) -> float:
    """Median |1200 log2(out / ref)| over frames voiced in both F0 tracks (F,); nan when none."""
    n = min(len(out), len(ref))
    m = (out[:n] > 0) & (ref[:n] > 0)
    return float(np.median(np.abs(1200 * np.log2(out[:n][m] / ref[:n][m])))) if m.any() else float("nan")


def median_shift_cents(base: np.ndarray, shifted: np.ndarray, ref: np.ndarray) -> tuple[float, int]:
    """Median of 1200 log2(shifted / base) over frames voiced (> 0) in all three F0 tracks (F,);
    (nan, 0) when there are none."""
    n = min(len(base), len(shifted), len(ref))
    b, s, r = base[:n], shifted[:n], ref[:n]
    m = (b > 0) & (s > 0) & (r > 0)
    if not m.any():
        return float("nan"), 0
    return float(np.median(1200 * np.log2(s[m] / b[m]))), int(m.sum())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--voice", default="voices/flite", help="Voice bundle folder.")
    p.add_argument("--data", default="data/flite", help="Corpus folder (its val split).")
    p.add_argument("--limit", type=int, default=1, help="Validation clips per speaker.")
    p.add_argument("--models", default="teacher,student")
    p.add_argument("--shift", type=float, default=150.0, help="Excitation pitch shift, cents.")
    p.add_argument(
        "--temperature", type=float, default=None, help="Teacher temperature (default: the voice's)."
    )
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    from evaluation.clips import clip_seed, select_clips
    from evaluation.copy_synthesis import copy_inputs, copy_synthesis
    from evaluation.errors import EvalError
    from evaluation.voices import load_voice
    from model.data.config import AudioConfig
    from model.data.corpus import Corpus
    from model.data.features import load_clip_audio
    from model.data.pitch import track_f0

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if not models or any(m not in ("teacher", "student") for m in models):
        print(f"error: --models takes teacher and/or student, got {args.models!r}")
        return 2
    try:
        _, voice = load_voice(args.voice, "cpu")
        chosen = select_clips(Corpus(args.data), "val", voice.speakers, args.limit, args.limit)
    except (EvalError, OSError, ValueError) as exc:
        print(f"error: {exc}")
        return 2
    cfg = AudioConfig.from_dict(dataclasses.asdict(voice.manifest.audio))
    print(f"# {args.voice}: copy synthesis with the excitation's F0 shifted by -/+{args.shift:g} cents")
    for c in chosen:
        _ref, mel, f0 = copy_inputs(load_clip_audio(args.data, c.id, cfg), cfg)  # (T,), (n_mels, F), (F,)
        spk = voice.speaker_id(c.voice_speaker)
        for model in models:
            temperature = args.temperature if model == "teacher" else None
            tracks = {}
            for sign in (0, -1, 1):
                exc_f0 = f0 * 2 ** (sign * args.shift / 1200)  # unvoiced frames stay 0
                out = copy_synthesis(voice, mel, spk, model, clip_seed(args.seed, c.id), exc_f0, temperature)
                tracks[sign] = track_f0(out, cfg)
            err = median_abs_cents(tracks[0], f0)
            down, nd = median_shift_cents(tracks[0], tracks[-1], f0)
            up, nu = median_shift_cents(tracks[0], tracks[1], f0)
            print(
                f"{c.id} {model}: |F0 error| median {err:.0f} cents; "
                f"excitation -{args.shift:g} -> {down:+.0f} (n={nd}), +{args.shift:g} -> {up:+.0f} (n={nu})",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
