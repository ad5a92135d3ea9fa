"""``parawave eval``: measure a shipped ONNX voice bundle against an LJSpeech-format corpus.

Torch-free: it runs the bundle through the service's own runtime (loaded by
:mod:`evaluation.voices`), so what is measured is what is served. For the first ``--limit`` clips per speaker of a split:

1. **Intelligibility.** pocketsphinx (its bundled US English model, default config; 16 kHz int16
   mono) transcribes the corpus recording (the reference renderer), the student's text->audio and
   (on the first ``--teacher-limit`` clips per speaker) the teacher's text->audio. Text->audio is
   ``OnnxEngine.synthesize`` on the corpus's raw text, the server's path. WER (jiwer, pooled over
   clips) against the corpus's normalized text; both sides go through :func:`evaluation.metrics.words` (the text front
   end's normalizer, lowercase, punctuation stripped). The reference's own WER is the baseline.
2. **Copy synthesis.** The ground-truth log-mel of the recording (``model.data.features.log_mel``
   with the bundle's audio config) -> student / teacher -> compared to the recording: PESQ wide
   band and STOI at 16 kHz, and the mel-cepstral distortion :func:`evaluation.metrics.mcd` between the output's
   log-mel and the recording's (frames 1:1, copy synthesis keeps the length).
3. **Durations.** Length of the student's text->audio vs the recording's: mean / median absolute
   relative error and the fraction within 15 %.
4. **Speed.** Wall seconds per audio second of the student's (and teacher's) text->audio.

Outputs under ``--out``: ``eval.json`` (every number, per system, per speaker and per clip, plus
the configuration), ``eval.md`` (the summary table and the targets, also printed),
``spectrograms.png``, ``durations.png`` and ``examples/*.wav`` (first clip of every speaker).

How each number is computed: :mod:`evaluation.metrics` (the mel-cepstral distortion included).
"""

from __future__ import annotations

from pathlib import Path

import typer

from evaluation.errors import EvalError
from evaluation.run import run_eval
from evaluation.voices import find_bundle
from service.settings import DEFAULT_VOICES_DIR

EVAL_PACKAGES = {  # import name -> distribution
    "pocketsphinx": "pocketsphinx",
    "pesq": "pesq",
    "pystoi": "pystoi",
    "jiwer": "jiwer",
    "matplotlib": "matplotlib",
    "soundfile": "soundfile",
}

app = typer.Typer(add_completion=False, help="Evaluate a voice: ASR WER, PESQ, STOI, MCD, durations.")


def check_packages() -> None:
    import importlib.util

    missing = [dist for mod, dist in EVAL_PACKAGES.items() if importlib.util.find_spec(mod) is None]
    if missing:
        raise EvalError(f"missing packages for eval: {', '.join(missing)} (pip install -e '.[eval]')")


@app.command()
def main(
    voice: str = typer.Option(
        ..., "--voice", help="Voice bundle name (a folder of --voices-dir) or a bundle path."
    ),
    voices_dir: Path = typer.Option(DEFAULT_VOICES_DIR, "--voices-dir", help="Folder of voice bundles."),
    data: Path = typer.Option(..., "--data", help="LJSpeech-format corpus folder (metadata.csv, wavs/)."),
    split: str = typer.Option("test", help="train | val | test."),
    limit: int = typer.Option(50, min=0, help="Clips per speaker (0: all)."),
    teacher_limit: int = typer.Option(5, min=0, help="Clips per speaker the slow teacher runs on (0: none)."),
    out: Path | None = typer.Option(None, help="Output folder (default: runs/eval/<voice>)."),
    speakers: str | None = typer.Option(None, help="Comma-separated corpus speakers (default: all)."),
    seed: int = typer.Option(0, help="Noise seed (same seed, same numbers)."),
    device: str = typer.Option("cpu", help="auto | cpu | cuda (the teacher always runs on the CPU)."),
) -> None:
    """Evaluate a voice bundle on a corpus split: ASR WER, PESQ-WB, STOI, MCD, durations, speed."""
    try:
        check_packages()
        if split not in ("train", "val", "test"):
            raise EvalError(f"--split must be train, val or test, got {split!r}")
        bundle = find_bundle(voice, voices_dir)
        chosen = [s.strip() for s in speakers.split(",") if s.strip()] if speakers else None
        out_dir = out if out is not None else Path("runs") / "eval" / bundle.name
        report = run_eval(
            bundle, data, out_dir, split=split, limit=limit, teacher_limit=teacher_limit,
            speakers=chosen, seed=seed, device=device,
        )  # fmt: skip
    except EvalError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from None
    typer.echo(report["markdown"])
    typer.echo(f"wrote {out_dir}/eval.json, eval.md, spectrograms.png, durations.png, examples/", err=True)
