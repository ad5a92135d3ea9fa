"""The ``parawave`` command.

The root group lives here, in the torch-free runtime package. Offline groups (``data``, ``train``,
``export``, ...) live next to the code they drive and are imported only when invoked, so
``parawave serve`` and ``parawave say`` never load torch or the training code.
"""

from __future__ import annotations

import importlib
import logging

import typer
import typer.main

# name -> ("module:attribute" of a typer.Typer or a click command, short help for the listing)
LAZY_COMMANDS: dict[str, tuple[str, str]] = {
    "text": ("model.text.cli:app", "Normalize text and print words and phonemes."),
    "data": ("model.data.cli:app", "Render, ingest and featurize LJSpeech-format corpora."),
    "train": ("model.train.cli:app", "Train the acoustic model, teacher and student."),
    "synth": ("model.synth:app", "Synthesize with PyTorch checkpoints (copy-synthesis, text)."),
    "export": ("export.cli:app", "Export checkpoints to ONNX and write voice bundles."),
    "eval": ("evaluation.cli:app", "Evaluate a voice: ASR WER, PESQ, STOI, MCD, durations."),
    "say": ("service.commands:say", "Synthesize text to a file with a voice bundle (no torch)."),
    "bench": ("service.commands:bench", "Benchmark a voice bundle with ONNX Runtime."),
    "serve": ("service.serve_command:serve", "Start the HTTP service (uvicorn)."),
    "loadtest": ("service.loadtest.sweep:app", "Sweep concurrency levels against a running server; report."),
    "soak": ("service.loadtest.soak:app", "Chaos soak (aborts, mixed formats, bad input): memory per wave."),
}


def _unavailable(name: str, short: str, exc: Exception) -> typer.Typer:
    """Stand-in for a group whose module cannot be imported in this install."""
    stub = typer.Typer(add_completion=False)
    stub.unavailable_reason = str(exc)  # type: ignore[attr-defined]  # tells the stand-in apart (tests)

    @stub.command(
        name=name, help=short, context_settings={"allow_extra_args": True, "ignore_unknown_options": True}
    )
    def unavailable(ctx: typer.Context) -> None:
        typer.echo(
            f"error: 'parawave {name}' is not available in this install ({exc}). "
            "Install the matching extra, e.g. pip install -e '.[train]'.",
            err=True,
        )
        raise typer.Exit(2)

    return stub


def _load(name: str) -> typer.Typer:
    target, short = LAZY_COMMANDS[name]
    module_name, attr = target.split(":")
    try:
        obj = getattr(importlib.import_module(module_name), attr)
    except (ModuleNotFoundError, AttributeError) as exc:
        return _unavailable(name, short, exc)
    if isinstance(obj, typer.Typer):
        return obj
    single = typer.Typer(add_completion=False)  # a plain typer-annotated function
    single.command(name=name, help=short)(obj)
    return single


class LazyGroup(typer.core.TyperGroup):
    """The root group: subcommands are imported on first use (module bodies must stay light)."""

    def list_commands(self, ctx):  # type: ignore[no-untyped-def]
        return sorted(set(super().list_commands(ctx)) | set(LAZY_COMMANDS))

    def get_command(self, ctx, cmd_name):  # type: ignore[no-untyped-def]
        if cmd_name not in LAZY_COMMANDS:
            return super().get_command(ctx, cmd_name)
        cmd = typer.main.get_command(_load(cmd_name))
        cmd.name = cmd_name
        if not cmd.help:
            cmd.help = LAZY_COMMANDS[cmd_name][1]
        return cmd


app = typer.Typer(
    cls=LazyGroup,
    help="parawave: text-to-speech with a Parallel WaveNet student and a WaveNet teacher.",
    no_args_is_help=True,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging."),
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def main() -> None:
    app()


if __name__ == "__main__":
    main()
