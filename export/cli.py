"""``parawave export``: checkpoints -> ONNX graphs -> a voice bundle ``voices/<name>/``.

    parawave export voice --name ljs3 --acoustic A.pt --student S.pt [--teacher T.pt] [--fp16] [--out voices]
    parawave export random --name bench-cpu --preset cpu [--speakers 1]   # random weights, for speed work
    parawave export check voices/ljs3                                      # verify a bundle, list it
    parawave export upgrade voices/old                                     # format 2 -> 3 (blending), in place

The module body stays light (torch is imported inside the commands), so ``--help`` is fast.
"""

from __future__ import annotations

import logging
from pathlib import Path

import typer

app = typer.Typer(add_completion=False, help="Export checkpoints to ONNX and write voice bundles.")

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "voices"


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


def _report(folder: Path, manifest, results) -> None:
    for r in results:
        typer.echo(str(r))
    total = 0
    for role, f in manifest.files.items():
        total += f.bytes
        typer.echo(f"  {role:<14} {f.path:<22} {f.bytes / 1000:>9.1f} kB  {f.precision}")
    typer.echo(
        f"wrote {folder} ({total / 1000:.1f} kB; speakers {', '.join(manifest.speakers)}; models {', '.join(manifest.models)})"
    )


@app.command("voice")
def voice(
    name: str = typer.Option(..., help="Voice (bundle folder) name."),
    acoustic: Path = typer.Option(..., help="Acoustic model checkpoint (required: text -> mel)."),
    student: Path | None = typer.Option(None, help="Student checkpoint (the real-time vocoder)."),
    teacher: Path | None = typer.Option(None, help="Teacher checkpoint (the autoregressive reference)."),
    out: Path = typer.Option(DEFAULT_OUT, help="Folder of voice bundles."),
    fp16: bool = typer.Option(False, help="Also write a float16 student for the CUDA provider."),
    overwrite: bool = typer.Option(False, help="Replace an existing bundle of that name."),
    teacher_temperature: float = typer.Option(
        1.0,
        help="The teacher's default sampling temperature, written to voice.json (0 < T <= 2; measure it, "
        "e.g. `python -m evaluation.curve --temperatures 1,0.8,0.6`).",
    ),
    hd_model: str = typer.Option(
        "teacher",
        help="What OpenAI's tts-1-hd speaks with on this voice: teacher or student (the better one by "
        "`parawave eval`; a voice without a teacher always uses the student).",
    ),
) -> None:
    """Export checkpoints (acoustic + student and/or teacher) to a parity-checked voice bundle."""
    from export.bundle import ExportError, bundle_from_checkpoints
    from export.parity import ParityError

    logging.basicConfig(level=logging.WARNING)
    if student is None and teacher is None:
        raise _fail("give --student and/or --teacher: a voice needs a vocoder")
    for p in (acoustic, student, teacher):
        if p is not None and not p.is_file():
            raise _fail(f"{p}: checkpoint not found")
    try:
        folder, manifest, results = bundle_from_checkpoints(
            out,
            name,
            acoustic=acoustic,
            student=student,
            teacher=teacher,
            fp16=fp16,
            overwrite=overwrite,
            teacher_temperature=teacher_temperature,
            hd_model=hd_model,
        )
    except (ExportError, ParityError) as exc:
        raise _fail(str(exc)) from None
    _report(folder, manifest, results)


@app.command("random")
def random(
    name: str = typer.Option(..., help="Voice (bundle folder) name."),
    preset: str = typer.Option(
        "cpu", help="Model presets: tiny | cpu | gpu (acoustic, student and teacher)."
    ),
    speakers: int = typer.Option(1, min=1, help="Number of speakers."),
    frames_per_phoneme: float = typer.Option(
        6.0, min=1.0, help="Typical predicted duration (speech-like length)."
    ),
    out: Path = typer.Option(DEFAULT_OUT, help="Folder of voice bundles."),
    teacher: bool = typer.Option(True, help="Include the teacher."),
    fp16: bool = typer.Option(False, help="Also write a float16 student."),
    seed: int = typer.Option(0),
    overwrite: bool = typer.Option(False),
) -> None:
    """A bundle of untrained models (random weights) at real sizes: speed does not depend on
    training, so this measures the serving path before a voice is trained. Audio is noise."""
    import math

    import torch

    from export.bundle import ExportError, ModelSource, write_bundle
    from model.acoustic import AcousticConfig, AcousticModel
    from model.data.config import AudioConfig
    from model.student import StudentIAF
    from model.student import preset as student_preset
    from model.teacher import TeacherWaveNet
    from model.teacher import preset as teacher_preset
    from model.text import default_symbols

    audio = AudioConfig()
    table = default_symbols()
    names = [f"speaker{i}" for i in range(speakers)]
    torch.manual_seed(seed)
    try:
        a = AcousticModel(
            AcousticConfig.preset(preset, n_symbols=len(table), n_speakers=speakers, dropout=0.0)
        )
        s = StudentIAF(student_preset(preset, n_speakers=speakers))
        t = TeacherWaveNet(teacher_preset(preset, n_speakers=speakers)) if teacher else None
    except ValueError as exc:
        raise _fail(str(exc)) from None
    with torch.no_grad():
        a.dur_out.weight.mul_(0.01)  # predicted durations ~ frames_per_phoneme, like speech
        a.dur_out.bias.fill_(math.log1p(frames_per_phoneme))
        a.mel_mean.fill_(-5.0)
        a.mel_std.fill_(2.0)
        for flow in s.flows:  # untrained zero heads would make the student the identity
            flow.head.weight.normal_(0.0, 0.01)
    try:
        folder, manifest, results = write_bundle(
            out,
            name,
            audio=audio.to_dict(),
            symbols=table.to_dict(),
            speakers=names,
            acoustic=ModelSource(a.eval()),
            student=ModelSource(s.eval()),
            teacher=ModelSource(t.eval()) if t is not None else None,
            fp16=fp16,
            corpus=f"random weights ({preset} presets, seed {seed})",
            overwrite=overwrite,
        )
    except ExportError as exc:
        raise _fail(str(exc)) from None
    _report(folder, manifest, results)


@app.command("upgrade")
def upgrade(
    folder: Path = typer.Argument(..., help="A format 2 bundle folder (voices/<name>)."),
    out: Path | None = typer.Option(
        None, help="Write the upgraded bundle into OUT/<name> (default: in place)."
    ),
) -> None:
    """Upgrade a format 2 bundle (speaker ids) to format 3 (speaker weights: voice blending) without its
    checkpoints; each upgraded graph is checked to speak exactly as before."""
    from export.upgrade import UpgradeError, upgrade_bundle

    try:
        target, diffs = upgrade_bundle(folder, out)
    except UpgradeError as exc:
        raise _fail(str(exc)) from None
    for role, diff in diffs.items():
        typer.echo(
            f"{role:<14} speaker ids -> speaker_weights; max abs difference on every speaker {diff:.3g}"
        )
    typer.echo(f"wrote {target} (format 3)")


@app.command("check")
def check(folder: Path = typer.Argument(..., help="A bundle folder (voices/<name>).")) -> None:
    """Verify a bundle (format, hashes, graph interfaces) and print what it holds."""
    from service.bundle import load
    from service.sessions import CPU
    from service.types import EngineLoadError
    from service.voice import Voice

    try:
        manifest = load(folder)
        Voice.load(folder, [CPU])
    except EngineLoadError as exc:
        raise _fail(str(exc)) from None
    p = manifest.provenance
    typer.echo(
        f"{manifest.name}: format {manifest.format_version}, {manifest.sample_rate} Hz, {manifest.audio.n_mels} mels"
    )
    typer.echo(f"  speakers: {', '.join(manifest.speakers)}; models: {', '.join(manifest.models)}")
    for role, f in manifest.files.items():
        typer.echo(f"  {role:<14} {f.path:<22} {f.bytes / 1000:>9.1f} kB  {f.precision}  sha256 ok")
    typer.echo(f"  provenance: corpus {p.corpus!r}, steps {p.steps}, commit {p.git_commit}, {p.date}")
    if p.parity:
        typer.echo(f"  parity at export: {p.parity}")
