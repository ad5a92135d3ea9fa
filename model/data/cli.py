"""``parawave data``: build and check LJSpeech-format corpora.

The module body stays light (typer only); the work is imported inside each command.
Run without the ``parawave`` entry point as ``python -m model.data.cli ...``.
"""

from __future__ import annotations

import os
from pathlib import Path

import typer

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Render, ingest and featurize LJSpeech-format corpora.",
)


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


@app.command()
def render(
    text: list[Path] = typer.Option(
        ..., "--text", "-t", help="id|text file (repeatable). A stem train/val/test sets the split."
    ),
    voice: list[str] = typer.Option(
        ...,
        "--voice",
        help="flite voice, repeatable or comma-separated: rms, slt, awb (or a .flitevox file).",
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Corpus folder to create or complete."),
    jobs: int = typer.Option(os.cpu_count() or 1, "--jobs", "-j", min=1, help="Parallel flite processes."),
    limit: int | None = typer.Option(
        None, "--limit", min=1, help="Only the first N lines of each text file."
    ),
    metadata_only: bool = typer.Option(
        False, "--metadata-only", help="Write metadata.csv/splits.csv without audio (no flite needed)."
    ),
    durations: bool = typer.Option(
        False, "--durations", help="Also keep flite's phone end times in <out>/durations/<id>.txt."
    ),
    split: str | None = typer.Option(None, "--split", help="Split of every line: train, val or test."),
    sample_rate: int = typer.Option(
        16_000, "--sample-rate", min=1, help="Output rate (resampled if needed)."
    ),
    flite: str = typer.Option("flite", "--flite", help="flite executable."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Speak id|text lines with flite into <out>/metadata.csv + wavs/ (resumable, parallel)."""
    from model.data.flite import RenderError
    from model.data.render import render_corpus

    try:
        res = render_corpus(
            text,
            voice,
            out,
            jobs=jobs,
            limit=limit,
            metadata_only=metadata_only,
            durations=durations,
            split=split,
            sample_rate=sample_rate,
            flite=flite,
            progress=progress,
        )
    except RenderError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        _fail(f"interrupted; finished clips are recorded in {out}/metadata.csv, rerun to resume", 130)
    for f in res.failures:
        typer.echo(f"failed: {f.where}: {f.message}", err=True)
    what = (
        "metadata rows" if metadata_only else f"clips ({res.rendered} rendered, {res.skipped} already done)"
    )
    typer.echo(
        f"{out}: {res.clips} {what}, {len(res.failures)} failed in {res.seconds:.1f} s "
        f"[normalizer: {res.normalizer}]"
    )
    if res.failures:
        raise typer.Exit(1)


@app.command()
def ingest(
    corpus: Path = typer.Argument(..., help="LJSpeech-format corpus folder (metadata.csv, wavs/)."),
    sample_rate: int = typer.Option(16_000, "--sample-rate", min=1, help="Expected sample rate."),
    min_seconds: float = typer.Option(0.5, "--min-seconds", help="Shorter clips get a warning."),
    max_seconds: float = typer.Option(20.0, "--max-seconds", help="Longer clips get a warning."),
    max_clip_fraction: float = typer.Option(
        0.001, "--max-clip-fraction", help="Clipped if more than this fraction of samples is at full scale."
    ),
    silence_dbfs: float = typer.Option(-60.0, "--silence-dbfs", help="Near-silent if RMS is below this."),
    jobs: int = typer.Option(4, "--jobs", "-j", min=1, help="Threads reading wavs."),
    pitch: bool = typer.Option(
        True, "--pitch/--no-pitch", help="Track F0 (Praat): report pitch coverage, flag clips where it fails."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Validate a corpus folder; list problems per clip. Exit 0 when valid, 1 on any error."""
    import json

    from tqdm import tqdm

    from model.data.ingest import IngestOptions, format_report, validate_corpus

    if not corpus.is_dir():
        _fail(f"{corpus}: not a directory")
    if pitch:
        try:
            import parselmouth  # noqa: F401
        except ImportError:
            typer.echo(
                "note: pitch not checked (praat-parselmouth is not installed: pip install praat-parselmouth)",
                err=True,
            )
            pitch = False
    opt = IngestOptions(
        sample_rate=sample_rate,
        min_seconds=min_seconds,
        max_seconds=max_seconds,
        silence_dbfs=silence_dbfs,
        max_clip_fraction=max_clip_fraction,
        jobs=jobs,
        pitch=pitch,
    )
    with tqdm(unit="clip", desc=f"ingest {corpus.name}", disable=not progress, leave=False) as bar:
        report = validate_corpus(corpus, opt, progress=bar.update)
    typer.echo(json.dumps(report.to_dict(), indent=2) if as_json else format_report(report))
    if not report.ok:
        raise typer.Exit(1)


# `features` and `manifest` live in their own module; one `parawave data` group serves all four.
from model.data.cli_features import app as _features_app  # noqa: E402

app.registered_commands.extend(_features_app.registered_commands)

if __name__ == "__main__":
    app()
