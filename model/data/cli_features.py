"""``parawave data features`` and ``parawave data manifest``: mel cache and phoneme manifest.

Light at import time (typer only); numpy/scipy/phonemizer load inside the commands.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Mel feature cache and phoneme manifest.")

log = logging.getLogger(__name__)


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def _check_corpus(corpus: Path) -> None:
    if not corpus.is_dir():
        _fail(f"{corpus}: not a directory")
    if not (corpus / "metadata.csv").is_file():
        _fail(f"{corpus}: no metadata.csv (expected an LJSpeech-format corpus)")


@app.command()
def features(
    corpus: Path = typer.Argument(..., help="LJSpeech-format corpus folder (metadata.csv, wavs/)."),
    jobs: int = typer.Option(os.cpu_count() or 1, "--jobs", "-j", min=1, help="Worker processes."),
    config: Path | None = typer.Option(
        None, "--config", help="JSON file with AudioConfig fields (default: the built-in config)."
    ),
    pitch: bool = typer.Option(True, "--pitch/--no-pitch", help="Also track and cache F0 per frame (Praat)."),
) -> None:
    """Compute and cache log-mels (and F0) of every clip under <corpus>/cache/{mel,f0}-<config hash>/."""
    import json

    from model.data.config import AudioConfig
    from model.data.corpus import CorpusError
    from model.data.features import cache_dir, compute_corpus_mels

    _check_corpus(corpus)
    try:
        cfg = AudioConfig.from_dict(json.loads(config.read_text())) if config else AudioConfig()
    except (OSError, ValueError, TypeError) as exc:
        _fail(f"{config}: cannot read an AudioConfig ({exc})")
    try:
        stats = compute_corpus_mels(corpus, cfg, jobs=jobs)
    except CorpusError as exc:
        _fail(str(exc))
    done = stats["computed"]
    rate = f", {1000 * stats['seconds'] / done:.1f} ms/clip wall" if done else ""
    typer.echo(
        f"{cache_dir(corpus, cfg)}: {done} computed, {stats['cached']} already cached, "
        f"{len(stats['failed'])} failed ({stats['seconds']:.1f} s{rate})"
    )
    for clip_id, err in sorted(stats["failed"].items()):
        typer.echo(f"  {clip_id}: {err}", err=True)
    failed = bool(stats["failed"])
    if pitch:
        from model.data.pitch import compute_corpus_f0, f0_cache_dir

        p = compute_corpus_f0(corpus, cfg, jobs=jobs)
        voiced = p["voiced"] / max(p["frames"], 1)
        typer.echo(
            f"{f0_cache_dir(corpus, cfg)}: F0 of {p['clips']} clips, {100 * voiced:.1f} % of frames voiced, "
            f"{len(p['unvoiced_clips'])} clips without a voiced frame, {len(p['failed'])} failed "
            f"({p['seconds']:.1f} s)"
        )
        for clip_id in p["unvoiced_clips"][:20]:
            typer.echo(f"  {clip_id}: no voiced frame (pitch tracking found no periodicity)", err=True)
        for clip_id, err in sorted(p["failed"].items()):
            typer.echo(f"  {clip_id}: {err}", err=True)
        failed = failed or bool(p["failed"])
    if failed:
        raise typer.Exit(1)


@app.command()
def manifest(
    corpus: Path = typer.Argument(..., help="LJSpeech-format corpus folder (metadata.csv)."),
    force: bool = typer.Option(False, "--force", help="Re-phonemize every clip, not only changed ones."),
) -> None:
    """Write <corpus>/phonemes.jsonl and symbols.json (normalize -> phonemize -> encode)."""
    from model.data.corpus import SPLITS, Corpus, CorpusError
    from model.data.manifest import build_manifest

    _check_corpus(corpus)
    try:
        stats = build_manifest(corpus, force=force)
        splits = Corpus(corpus)
    except CorpusError as exc:
        _fail(str(exc))
    counts = ", ".join(f"{s} {len(splits.ids(s))}" for s in SPLITS)
    typer.echo(
        f"{corpus / 'phonemes.jsonl'}: {stats['clips']} clips ({counts}), {stats['phonemized']} phonemized, "
        f"{stats['reused']} reused, {stats['unknown_symbols']} unknown symbols ({stats['seconds']:.1f} s)"
    )
    if stats["empty"]:
        typer.echo(
            f"warning: {len(stats['empty'])} clips have no phonemes, e.g. {stats['empty'][0]}", err=True
        )
