"""``parawave serve``: the HTTP service (uvicorn) on the voice bundles of the settings, with the
Wyoming server beside it when asked. Torch-free; what would fail in the app's lifespan (no bundle, a
broken one, CUDA required and missing, a Wyoming port taken) is one error line here instead.
"""

from __future__ import annotations

from pathlib import Path

import typer

from service.commands import _fail, _require_voice, _settings


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
    wyoming: str | None = typer.Option(
        None,
        help="Also serve the Wyoming protocol (Home Assistant) here, e.g. tcp://0.0.0.0:10200 "
        "[env PARAWAVE_WYOMING_URI; default off].",
    ),
    zeroconf: bool | None = typer.Option(
        None, "--zeroconf/--no-zeroconf", help="Announce the Wyoming server over zeroconf [default off]."
    ),
) -> None:
    """Start the HTTP service on the voice bundles in VOICES_DIR (other settings: PARAWAVE_* env)."""
    from service.settings import export_to_environment

    given = {
        "host": host,
        "port": port,
        "workers": workers,
        "voices_dir": voices_dir,
        "device": device,
        "require_cuda": require_cuda,
        "log_level": log_level,
        "wyoming_uri": wyoming,
        "wyoming_zeroconf": zeroconf,
    }
    export_to_environment(given)  # through the environment, so that every worker process sees them
    settings = _settings()
    _require_voice(settings.voices_dir)
    if settings.device == "cuda" and settings.require_cuda:
        _require_cuda()
    if settings.wyoming_uri:
        _check_wyoming(settings)

    import uvicorn

    from service.allocator import limit_arenas

    limit_arenas(settings.malloc_arena_max)  # before any thread allocates (service/allocator.py)

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
    if settings.wyoming_uri:
        typer.echo(f"parawave: Wyoming (Home Assistant) on {settings.wyoming_uri}", err=True)
    uvicorn.run(
        target,  # type: ignore[arg-type]
        factory=settings.workers > 1,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=settings.log_level,
        log_config=_log_config(settings.log_level),
        timeout_graceful_shutdown=settings.graceful_shutdown_s,
    )


def _check_wyoming(settings) -> None:
    """One clear line, before uvicorn starts, for what would otherwise fail in the app's lifespan."""
    import socket
    from urllib.parse import urlparse

    if settings.workers > 1:
        raise _fail("--wyoming serves from one process: use --workers 1 (one engine, one Wyoming port)")
    if settings.wyoming_zeroconf:
        try:
            import zeroconf  # noqa: F401
        except ImportError:
            raise _fail("--zeroconf needs the zeroconf package: pip install -e '.[zeroconf]'") from None
    uri = urlparse(settings.wyoming_uri)
    if uri.scheme != "tcp":
        return
    try:
        with socket.socket(socket.AF_INET6 if ":" in uri.hostname else socket.AF_INET) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((uri.hostname, uri.port))
    except OSError as exc:
        raise _fail(f"cannot listen for Wyoming on {settings.wyoming_uri}: {exc.strerror or exc}") from None


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
