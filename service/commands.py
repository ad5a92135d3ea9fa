"""Torch-free CLI commands: ``serve``, ``say``, ``bench``.

They need a voice bundle under ``voices/`` (see DESIGN.md, "Voice bundle"). Until the runtime
engine and a trained voice land, ``say`` and ``bench`` say so clearly and exit non-zero.
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
    host: str | None = typer.Option(None, help="Interface to bind [env PARAWAVE_HOST, default 127.0.0.1]."),
    port: int | None = typer.Option(None, help="TCP port [env PARAWAVE_PORT, default 8000]."),
    workers: int | None = typer.Option(None, help="Worker processes [env PARAWAVE_WORKERS, default 1]."),
    voices_dir: Path | None = typer.Option(None, help="Folder of voice bundles [env PARAWAVE_VOICES_DIR]."),
    device: str | None = typer.Option(None, help="auto | cpu | cuda [env PARAWAVE_DEVICE, default auto]."),
    require_cuda: bool | None = typer.Option(
        None, "--require-cuda/--no-require-cuda", help="Refuse to start when CUDA is asked and missing."
    ),
    log_level: str | None = typer.Option(None, help="critical | error | warning | info | debug."),
) -> None:
    """Start the HTTP service on the voice bundles in VOICES_DIR (other settings: PARAWAVE_* env)."""
    import os

    from pydantic import ValidationError

    from service.settings import get_settings

    given = {
        "host": host,
        "port": port,
        "workers": workers,
        "voices_dir": voices_dir,
        "device": device,
        "require_cuda": require_cuda,
        "log_level": log_level,
    }
    for name, value in given.items():
        if value is not None:  # through the environment, so that every worker process sees them
            os.environ[f"PARAWAVE_{name.upper()}"] = (
                str(value).lower() if isinstance(value, bool) else str(value)
            )
    get_settings.cache_clear()
    try:
        settings = get_settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        typer.echo(f"error: invalid setting {where}: {first['msg']}", err=True)
        raise typer.Exit(2) from None
    _require_voice(settings.voices_dir)
    if settings.device == "cuda" and settings.require_cuda:
        _require_cuda()

    import uvicorn

    from service import state
    from service.types import EngineLoadError

    # Load once here so a broken bundle or a missing CUDA provider is one clear line, not a
    # startup traceback. One worker serves this engine; several workers each load their own.
    try:
        engine = state.default_engine_loader(settings)
    except EngineLoadError as exc:
        typer.echo(f"error: cannot load voices from {settings.voices_dir}: {exc}", err=True)
        raise typer.Exit(2) from None
    target: object = "service.app:create_app"
    if settings.workers == 1:
        from service.app import create_app

        target = create_app(settings, engine=engine)
    else:
        del engine
    typer.echo(f"parawave: serving {settings.voices_dir} on http://{settings.host}:{settings.port}", err=True)
    uvicorn.run(
        target,  # type: ignore[arg-type]
        factory=settings.workers > 1,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=settings.log_level,
        log_config=_log_config(settings.log_level),
        timeout_graceful_shutdown=10,
    )


def _require_cuda() -> None:
    try:
        import onnxruntime
    except ImportError:
        typer.echo(
            "error: CUDA required but onnxruntime is not installed (pip install -e '.[gpu]').", err=True
        )
        raise typer.Exit(2) from None
    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        typer.echo(
            "error: CUDA required (--device cuda --require-cuda) but onnxruntime has no CUDA provider "
            f"(available: {', '.join(onnxruntime.get_available_providers())}); install onnxruntime-gpu.",
            err=True,
        )
        raise typer.Exit(2)


def _log_config(level: str) -> dict:
    """uvicorn's logging, plus the service's own loggers on the same handler."""
    import copy

    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["service"] = {"handlers": ["default"], "level": level.upper(), "propagate": False}
    return config


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
