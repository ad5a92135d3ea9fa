"""Torch-free CLI commands: ``serve``, ``say``, ``bench``.

They need a voice bundle under ``voices/`` (see DESIGN.md, "Voice bundle"). Until the runtime
engine and a trained voice land, they say so clearly and exit non-zero.
"""

from __future__ import annotations

import logging
from pathlib import Path

import typer

log = logging.getLogger(__name__)

DEFAULT_VOICES_DIR = Path(__file__).resolve().parent.parent / "voices"


def _bundles(voices_dir: Path) -> list[Path]:
    return sorted(p.parent for p in voices_dir.glob("*/voice.json"))


def _require_voice(voices_dir: Path) -> None:
    if not _bundles(voices_dir):
        typer.echo(
            f"error: no voice bundle in {voices_dir} (expected <name>/voice.json). "
            "parawave does not ship a trained voice yet; train one (parawave train ...) and "
            "export it (parawave export ...), or point --voices-dir at a bundle folder.",
            err=True,
        )
        raise typer.Exit(2)


def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to bind."),
    port: int = typer.Option(8000, help="TCP port."),
    voices_dir: Path = typer.Option(DEFAULT_VOICES_DIR, help="Folder of voice bundles."),
) -> None:
    """Start the HTTP service on the voice bundles in VOICES_DIR."""
    _require_voice(voices_dir)
    typer.echo("error: the HTTP service is not built yet in this version.", err=True)
    raise typer.Exit(2)


def say(
    text: str = typer.Argument(..., help="Text to speak."),
    output: Path = typer.Option(Path("out.wav"), "-o", "--output", help="Output audio file."),
    voices_dir: Path = typer.Option(DEFAULT_VOICES_DIR, help="Folder of voice bundles."),
) -> None:
    """Synthesize TEXT to an audio file with a voice bundle (ONNX Runtime, no torch)."""
    _require_voice(voices_dir)
    typer.echo("error: the inference engine is not built yet in this version.", err=True)
    raise typer.Exit(2)


def bench(
    voices_dir: Path = typer.Option(DEFAULT_VOICES_DIR, help="Folder of voice bundles."),
) -> None:
    """Benchmark a voice bundle (RTF, samples/s, memory)."""
    _require_voice(voices_dir)
    typer.echo("error: the inference engine is not built yet in this version.", err=True)
    raise typer.Exit(2)
