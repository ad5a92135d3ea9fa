"""``parawave train <model>``: every trainer takes the same options.

    parawave train teacher  --data CORPUS --out RUN [--preset tiny|cpu|gpu] [--set key=value ...]
                            [--resume] [--max-steps N] [--max-minutes M] [--device cpu|cuda]
    parawave train student  [--teacher CKPT] [--init CKPT]  (same options; no teacher = spectral-only)
                            [--max-cpu-minutes M]
    parawave train acoustic (same options) [--max-cpu-minutes M]

A trainer is a function ``train(args: TrainArgs) -> dict`` (the summary of
:func:`model.train.common.run_training`) registered in :data:`TRAINERS` as "module:function";
modules are imported only when their command runs, so ``--help`` stays fast and torch-free.
Adding a model = one TRAINERS entry + one small command below (extra options go into TrainArgs).
Distributed: ``torchrun --nproc_per_node N -m model.train.cli teacher ...``.
"""

from __future__ import annotations

import importlib
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


def _run(kind: str, args) -> None:
    from model.train.common import UserError, summary_table

    module_name, attr = TRAINERS[kind][0].split(":")
    try:
        trainer = getattr(importlib.import_module(module_name), attr)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        typer.echo(f"error: the {kind} trainer ({module_name}) is not available yet", err=True)
        raise typer.Exit(2) from None
    from model.data.corpus import CorpusError

    try:
        summary = trainer(args)
    except (UserError, CorpusError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if isinstance(summary, dict) and "step" in summary and int(os.environ.get("RANK", "0")) == 0:
        typer.echo(summary_table(summary))


def _args(data, out, preset, sets, resume, max_steps, max_minutes, device, max_cpu_minutes=None, **extra):
    from model.train.common import TrainArgs

    return TrainArgs(
        data=data,
        out=out,
        preset=preset,
        sets=tuple(sets or ()),
        resume=resume,
        max_steps=max_steps,
        max_minutes=max_minutes,
        max_cpu_minutes=max_cpu_minutes,
        device=device,
        **extra,
    )


@app.command("teacher", help=TRAINERS["teacher"][1])
def teacher(
    init: Path | None = typer.Option(
        None,
        "--init",
        help="Start a fresh run from this teacher checkpoint's weights and architecture "
        "(--set model.excitation_layers=true adds a zero-initialised per-layer excitation).",
    ),
    data: Path = _DATA,
    out: Path = _OUT,
    preset: str = _PRESET,
    sets: list[str] | None = _SET,
    resume: bool = _RESUME,
    max_steps: int | None = _MAX_STEPS,
    max_minutes: float | None = _MAX_MINUTES,
    device: str | None = _DEVICE,
    max_cpu_minutes: float | None = _MAX_CPU_MINUTES,
) -> None:
    extra = {"extra": {"init": init}} if init is not None else {}
    _run(
        "teacher",
        _args(data, out, preset, sets, resume, max_steps, max_minutes, device, max_cpu_minutes, **extra),
    )


@app.command("student", help=TRAINERS["student"][1])
def student(
    teacher: Path | None = typer.Option(
        None,
        "--teacher",
        help="Teacher checkpoint (best.pt or last.pt). Without it: spectral-only training (STFT loss).",
    ),
    init: Path | None = typer.Option(
        None, "--init", help="Start a fresh run from this student checkpoint's weights and architecture."
    ),
    data: Path = _DATA,
    out: Path = _OUT,
    preset: str = _PRESET,
    sets: list[str] | None = _SET,
    resume: bool = _RESUME,
    max_steps: int | None = _MAX_STEPS,
    max_minutes: float | None = _MAX_MINUTES,
    device: str | None = _DEVICE,
    max_cpu_minutes: float | None = _MAX_CPU_MINUTES,
) -> None:
    _run(
        "student",
        _args(
            data,
            out,
            preset,
            sets,
            resume,
            max_steps,
            max_minutes,
            device,
            max_cpu_minutes=max_cpu_minutes,
            teacher=teacher,
            extra={"init": init} if init is not None else {},
        ),
    )


@app.command("acoustic", help=TRAINERS["acoustic"][1])
def acoustic(
    init: Path | None = typer.Option(
        None,
        "--init",
        help="Start a fresh run from this acoustic checkpoint's weights and architecture (a model "
        "without pitch gains a pitch predictor).",
    ),
    data: Path = _DATA,
    out: Path = _OUT,
    preset: str = _PRESET,
    sets: list[str] | None = _SET,
    resume: bool = _RESUME,
    max_steps: int | None = _MAX_STEPS,
    max_minutes: float | None = _MAX_MINUTES,
    device: str | None = _DEVICE,
    max_cpu_minutes: float | None = _MAX_CPU_MINUTES,
) -> None:
    extra = {"extra": {"init": init}} if init is not None else {}
    _run(
        "acoustic",
        _args(data, out, preset, sets, resume, max_steps, max_minutes, device, max_cpu_minutes, **extra),
    )


if __name__ == "__main__":  # torchrun --nproc_per_node N -m model.train.cli teacher ...
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app()
