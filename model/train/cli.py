"""``parawave train <model>``: every trainer takes the same options.

    parawave train teacher  --data CORPUS --out RUN [--preset tiny|cpu|gpu] [--set key=value ...]
                            [--resume] [--max-steps N] [--max-minutes M] [--device cpu|cuda]
    parawave train student  [--teacher CKPT] [--init CKPT]  (same options; no teacher = spectral-only)
                            [--max-cpu-minutes M]
    parawave train acoustic (same options) [--max-cpu-minutes M]

A trainer is a function ``train(args: TrainArgs) -> dict`` (the summary of
:func:`model.train.loop.run_training`) registered in :data:`TRAINERS` as "module:function";
modules are imported only when their command runs, so ``--help`` stays fast and torch-free.
Adding a model = one TRAINERS entry + one :func:`_command` below (its own options are TrainArgs fields).
Distributed: ``torchrun --nproc_per_node N -m model.train.cli teacher ...``.
"""

from __future__ import annotations

import importlib
import inspect
import os
from pathlib import Path

import typer

app = typer.Typer(
    no_args_is_help=True, add_completion=False, help="Train the acoustic model, teacher and student."
)

# kind -> ("module:function", one-line help)
TRAINERS: dict[str, tuple[str, str]] = {
    "teacher": (
        "model.train.teacher:train",
        "WaveNet teacher: autoregressive Gaussian vocoder (teacher forcing).",
    ),
    "student": (
        "model.train.student:train",
        "Parallel WaveNet student distilled from a teacher (--teacher CKPT; without one: STFT loss only).",
    ),
    "acoustic": (
        "model.train.acoustic:train",
        "Acoustic model: phoneme ids -> log-mel with learned alignment.",
    ),
}

_DATA = typer.Option(..., "--data", help="LJSpeech-format corpus folder (metadata.csv, wavs/).")
_OUT = typer.Option(..., "--out", help="Run folder: checkpoints/{last,best}.pt, tb/, config.json.")
_PRESET = typer.Option("cpu", "--preset", help="Named configuration: tiny | cpu | gpu.")
_SET = typer.Option(
    None, "--set", help="Override a setting, e.g. --set lr=3e-4 --set model.layers=12 (repeatable)."
)
_RESUME = typer.Option(
    False, "--resume", help="Continue from <out>/checkpoints/last.pt (fresh start if none)."
)
_MAX_STEPS = typer.Option(
    None, "--max-steps", help="Stop at this global step (default: the schedule's length)."
)
_MAX_MINUTES = typer.Option(
    None, "--max-minutes", help="Stop after this many minutes of training in this run."
)
_MAX_CPU_MINUTES = typer.Option(
    None,
    "--max-cpu-minutes",
    help="Stop after this many minutes of this process's CPU time in this run (equal-budget A/Bs "
    "on a shared machine).",
)
_DEVICE = typer.Option(None, "--device", help="cpu | cuda | cuda:N (default: cuda when available).")


def _option(name: str, annotation, default) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


# the options every trainer takes, in --help order after the trainer's own (one declaration)
_SHARED = (
    _option("data", Path, _DATA),
    _option("out", Path, _OUT),
    _option("preset", str, _PRESET),
    _option("sets", list[str] | None, _SET),
    _option("resume", bool, _RESUME),
    _option("max_steps", int | None, _MAX_STEPS),
    _option("max_minutes", float | None, _MAX_MINUTES),
    _option("device", str | None, _DEVICE),
    _option("max_cpu_minutes", float | None, _MAX_CPU_MINUTES),
)


def _run(kind: str, options: dict) -> None:
    """Run the ``kind`` trainer on the command line's ``options`` (TrainArgs' fields, ``sets`` a list)."""
    from model.checkpoint import UserError
    from model.data.corpus import CorpusError
    from model.train.config import TrainArgs
    from model.train.loop import summary_table

    module_name, attr = TRAINERS[kind][0].split(":")
    try:
        trainer = getattr(importlib.import_module(module_name), attr)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        typer.echo(f"error: the {kind} trainer ({module_name}) is not available yet", err=True)
        raise typer.Exit(2) from None
    args = TrainArgs(**{**options, "sets": tuple(options["sets"] or ())})
    try:
        summary = trainer(args)
    except (UserError, CorpusError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if isinstance(summary, dict) and "step" in summary and int(os.environ.get("RANK", "0")) == 0:
        typer.echo(summary_table(summary))


def _command(kind: str, *own: inspect.Parameter) -> None:
    """Register ``parawave train <kind>``: its own options (``own``), then the shared ones."""

    def command(**options) -> None:
        _run(kind, options)

    command.__signature__ = inspect.Signature([*own, *_SHARED])
    command.__name__ = kind
    app.command(kind, help=TRAINERS[kind][1])(command)


def _init(text: str) -> inspect.Parameter:
    return _option("init", Path | None, typer.Option(None, "--init", help=text))


_command(
    "teacher",
    _init(
        "Start a fresh run from this teacher checkpoint's weights and architecture "
        "(--set model.excitation_layers=true adds a zero-initialised per-layer excitation)."
    ),
)
_command(
    "student",
    _option(
        "teacher",
        Path | None,
        typer.Option(
            None,
            "--teacher",
            help="Teacher checkpoint (best.pt or last.pt). Without it: spectral-only training (STFT loss).",
        ),
    ),
    _init("Start a fresh run from this student checkpoint's weights and architecture."),
)
_command(
    "acoustic",
    _init(
        "Start a fresh run from this acoustic checkpoint's weights and architecture (a model "
        "without pitch gains a pitch predictor)."
    ),
)


if __name__ == "__main__":  # torchrun --nproc_per_node N -m model.train.cli teacher ...
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app()
