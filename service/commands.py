"""Torch-free CLI commands: ``say``, ``bench`` (``serve``: ``service.serve_command``).

They need a voice bundle under ``voices/`` (see docs/design.md, "Voice bundle"; ``parawave export``
writes one). They load voices through ``service.loading`` and run the ONNX Runtime engine, never torch.
"""

from __future__ import annotations

import logging
from pathlib import Path

import typer

from core.limits import MAX_PITCH, MAX_SPEED, MIN_PITCH, MIN_SPEED, pitch_ok
from service.settings import DEFAULT_VOICES_DIR

log = logging.getLogger(__name__)


def _require_voice(voices_dir: Path) -> None:
    from service.loading import bundle_dirs

    if not bundle_dirs(voices_dir):
        typer.echo(
            f"error: no voice bundle in {voices_dir} (expected <name>/voice.json): point --voices-dir "
            "at a folder of bundles, or train and export one (README: Training a voice).",
            err=True,
        )
        raise typer.Exit(2)


def _settings():
    """``service.settings.get_settings()``; an invalid PARAWAVE_* value (or .env line) is one error line."""
    from pydantic import ValidationError

    from service.settings import get_settings

    try:
        return get_settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        typer.echo(f"error: invalid setting {where}: {first['msg']}", err=True)
        raise typer.Exit(2) from None


SUFFIX_FORMATS = {
    ".wav": "wav",
    ".flac": "flac",
    ".mp3": "mp3",
    ".ogg": "opus",
    ".opus": "opus",
    ".aac": "aac",
    ".pcm": "pcm",
    ".raw": "pcm",
}

BENCH_TEXT = (
    "The quick brown fox jumps over the lazy dog, while the early train to the city waits at the "
    "platform. Speech synthesis turns written words into sound; a fast vocoder makes it real time. "
    "Yesterday, forty two people walked along the river and watched the boats go by."
)


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


def _engine(voices_dir: Path, device: str, threads: int | None = None):
    """The engine on ``voices_dir``, with the engine knobs of the settings (``threads``, when given,
    overrides ``intra_op_threads``)."""
    from service.loading import load_engine
    from service.types import EngineLoadError

    _require_voice(voices_dir)
    options = _settings().engine_options()
    if threads is not None:
        options["intra_op_threads"] = threads
    try:
        return load_engine(voices_dir, device=device, require_cuda=False, **options)
    except EngineLoadError as exc:
        raise _fail(f"cannot load voices from {voices_dir}: {exc}") from None


def _pick(engine, voice: str | None, speaker: str | None) -> tuple[str, str]:
    infos = list(engine.voices)
    if voice is None:
        info = next((v for v in infos if speaker is None or speaker in v.speakers), infos[0])
    else:
        info = next((v for v in infos if v.name == voice), None)
        if info is None:
            raise _fail(f"no voice {voice!r} (loaded: {', '.join(v.name for v in infos)})")
    if speaker is None:  # the API's default: the speaker "alloy" maps to, else the first
        from service.catalog import DEFAULT_ALIAS
        from service.settings import OPENAI_VOICES

        preferred = OPENAI_VOICES.get(DEFAULT_ALIAS)
        speaker = preferred if preferred in info.speakers else info.speakers[0]
    elif speaker not in info.speakers:
        raise _fail(f"voice {info.name!r} has no speaker {speaker!r} (speakers: {', '.join(info.speakers)})")
    return info.name, speaker


def say(
    text: str | None = typer.Argument(None, help="Text to speak ('-': read standard input)."),
    file: Path | None = typer.Option(
        None, "-f", "--file", help="Read the text from this file ('-': standard input), of any length."
    ),
    output: Path = typer.Option(
        Path("out.wav"), "-o", "--output", help="Output file: .wav .flac .mp3 .ogg .aac .pcm"
    ),
    subtitles: Path | None = typer.Option(
        None, "--subtitles", help="Also write subtitles (.srt or .vtt) timed to the audio."
    ),
    resume: bool = typer.Option(
        False, "--resume", help="Go on from where an interrupted run over the same text stopped (wav, pcm)."
    ),
    progress: bool | None = typer.Option(
        None, "--progress/--no-progress", help="Progress bar on stderr [default: when it is a terminal]."
    ),
    voice: str | None = typer.Option(None, help="Voice bundle name [default: the first]."),
    speaker: str | None = typer.Option(
        None, help="Speaker name [default: the voice's first], or a blend of its speakers: 'slt(2)+rms(1)'."
    ),
    speed: float = typer.Option(
        1.0, min=MIN_SPEED, max=MAX_SPEED, help=f"Speaking rate, {MIN_SPEED:g}-{MAX_SPEED:g} (> 1 is faster)."
    ),
    pitch: float = typer.Option(
        0.0,
        help=f"Pitch shift in semitones, {MIN_PITCH:g} to {MAX_PITCH:g} (0 = the voice's own pitch; 12 = an octave up).",
    ),
    model: str = typer.Option("student", help="student (real time) | teacher (autoregressive reference)."),
    seed: int | None = typer.Option(None, help="Noise seed (same seed, same audio)."),
    voices_dir: Path = typer.Option(DEFAULT_VOICES_DIR, help="Folder of voice bundles."),
    device: str = typer.Option("cpu", help="auto | cpu | cuda."),
) -> None:
    """Synthesize TEXT (or a file, or standard input, of any length) to an audio file, written as it
    is generated, with optional subtitles (ONNX Runtime, no torch). Ctrl-C keeps a valid file."""
    import signal
    import sys
    import time

    from service.audio import available_formats
    from service.longform import SUBTITLE_SUFFIXES, speak_to_file
    from service.types import InputError, SynthesisRequest

    # checked here, not with typer's min/max, so a bad value is one line (typer draws a box)
    if not pitch_ok(pitch):
        raise _fail(f"--pitch must be between {MIN_PITCH:g} and {MAX_PITCH:g} semitones, got {pitch:g}")
    if (text is None) == (file is None):
        raise _fail("give the text to speak, or --file PATH (or '-' for standard input), not both")
    source = file if file is not None else (Path("-") if text == "-" else None)
    if source is not None:
        try:
            text = sys.stdin.read() if str(source) == "-" else source.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise _fail(f"{source}: cannot read the text ({getattr(exc, 'strerror', None) or exc})") from None
    assert text is not None
    if not text.strip():
        raise _fail("the text is empty")

    fmt = SUFFIX_FORMATS.get(output.suffix.lower())
    if fmt is None:
        raise _fail(f"{output}: unknown audio suffix (use one of {', '.join(SUFFIX_FORMATS)})")
    if fmt not in available_formats():
        raise _fail(
            f"{output}: this libsndfile cannot write {fmt} (available: {', '.join(available_formats())})"
        )
    if subtitles is not None and subtitles.suffix.lower() not in SUBTITLE_SUFFIXES:
        raise _fail(f"{subtitles}: unknown subtitle suffix (use .srt or .vtt)")
    if model not in ("student", "teacher"):
        raise _fail(f"--model must be student or teacher, got {model!r}")
    engine = _engine(voices_dir, device)
    blend = None
    if speaker is not None and "+" in speaker:  # a voice blend, "slt(2)+rms(1)"
        from service.catalog import BlendError, VoiceCatalog

        infos = [v for v in engine.voices if voice is None or v.name == voice] or list(engine.voices)
        try:
            entry = VoiceCatalog(infos).resolve_blend(speaker)
        except BlendError as exc:
            raise _fail(str(exc)) from None
        assert entry is not None
        voice_name, speaker_name, blend = entry.voice.name, entry.id, entry.blend
    else:
        voice_name, speaker_name = _pick(engine, voice, speaker)
    info = next(v for v in engine.voices if v.name == voice_name)
    if model not in info.models:
        raise _fail(f"voice {voice_name!r} does not ship the {model} model")
    first = speaker_name if blend is None else blend[0][0]
    request = SynthesisRequest(text, voice_name, first, speed, model, seed, pitch, blend=blend)  # type: ignore[arg-type]

    bar = _progress_bar(len(text), progress)
    last = [0]

    def advance(chars: int) -> None:
        if bar is not None and chars > last[0]:
            bar.update(chars - last[0])
            last[0] = chars

    def terminate(signum, frame):  # SIGTERM: stop like Ctrl-C, so the files are finalized
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, terminate)
    start = time.perf_counter()
    try:
        result = speak_to_file(engine, text, request, output, fmt, subtitles, resume, advance)
    except InputError as exc:
        raise _fail(str(exc)) from None
    except KeyboardInterrupt:
        typer.echo(
            f"\ninterrupted: {output} holds the audio written so far"
            + (" (--resume goes on from there)" if fmt in ("wav", "pcm") else ""),
            err=True,
        )
        raise typer.Exit(130) from None
    except OSError as exc:
        raise _fail(f"cannot write ({exc.strerror or exc}): {exc.filename or output}") from None
    finally:
        signal.signal(signal.SIGTERM, previous)
        if bar is not None:
            bar.close()
    elapsed = time.perf_counter() - start
    seconds = result.samples / result.sample_rate
    resumed = f", resumed after block {result.resumed_from}" if result.resumed_from else ""
    typer.echo(
        f"{output}: {seconds:.2f} s at {result.sample_rate} Hz ({fmt}), voice {voice_name}/{speaker_name}, "
        f"{model} on {engine.providers.get(model, '?')}, {elapsed:.2f} s (RTF {elapsed / max(seconds, 1e-9):.3f})"
        + (f"; {result.cues} subtitle cues in {subtitles}" if subtitles else "")
        + resumed,
        err=True,
    )


def _progress_bar(total: int, wanted: bool | None):
    """A tqdm bar over the input's characters on stderr; None when off (default: off unless stderr
    is a terminal)."""
    import sys

    if wanted is False or (wanted is None and not sys.stderr.isatty()):
        return None
    from tqdm import tqdm

    return tqdm(
        total=total, unit="char", unit_scale=True, desc="speaking", file=sys.stderr, dynamic_ncols=True
    )


def bench(
    voices_dir: Path = typer.Option(DEFAULT_VOICES_DIR, help="Folder of voice bundles."),
    voice: str | None = typer.Option(None, help="Voice bundle name [default: the first]."),
    speaker: str | None = typer.Option(
        None, help="Speaker name [default: the voice's first], or a blend of its speakers: 'slt(2)+rms(1)'."
    ),
    text: str = typer.Option(BENCH_TEXT, help="Input text (the same for every measurement)."),
    runs: int = typer.Option(5, min=1, help="Timed runs of each measurement (best and median shown)."),
    student_seconds: float = typer.Option(
        0.0,
        min=0.0,
        help="Audio per student run [default 0: the text's whole mel; e.g. 10 for a 10 s utterance].",
    ),
    teacher_seconds: float = typer.Option(0.5, min=0.0, help="Audio the teacher generates (0: skip)."),
    batch: str = typer.Option("1", help="Student batch sizes for samples/s, e.g. 1,4,16."),
    device: str = typer.Option("cpu", help="auto | cpu | cuda."),
    threads: int | None = typer.Option(
        None,
        help="CPU threads per session [default: the intra_op_threads setting (PARAWAVE_INTRA_OP_THREADS) or 1; "
        "0: onnxruntime's choice].",
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Print one JSON object of the numbers instead of the table (for scripts)."
    ),
) -> None:
    """Benchmark a voice bundle on one input: text->audio RTF and time to first audio (acoustic +
    student), student and teacher samples/s and their ratio, peak memory, providers. ``--json``:
    the same numbers as one JSON object (fields: ``service/bench_report.py``).

    The student's samples/s are measured on the text's mel (or ``--student-seconds`` of it, tiled),
    ``b`` copies per run for batch ``b``, in every precision the bundle ships for the provider (fp32,
    and fp16 on CUDA). Without the text front end's packages (a GPU host), phoneme ids of the same
    length stand in for the text and the RTF row says so.
    """
    import platform
    import resource
    import statistics
    import time

    import numpy as np

    from service import bench_report
    from service.sessions import CUDA, Graph
    from service.types import SynthesisRequest

    try:
        batches = sorted({int(b) for b in batch.split(",") if b.strip()})
    except ValueError:
        raise _fail(f"--batch must be comma-separated integers, got {batch!r}") from None
    if not batches or min(batches) < 1:
        raise _fail("--batch sizes must be >= 1")
    engine = _engine(voices_dir, device, threads)
    voice_name, speaker_name = _pick(engine, voice, speaker)
    v = engine.voice(voice_name)
    spk = v.speaker_id(speaker_name)
    engine.warmup()
    out = (lambda line: typer.echo(line, err=True)) if as_json else typer.echo  # stdout: the JSON alone
    record = bench_report.new_record(voice_name, speaker_name, v.sample_rate, device, engine.providers)
    out(f"voice {voice_name}/{speaker_name}, {v.sample_rate} Hz; providers {dict(engine.providers)}")
    out(f"machine: {platform.processor() or platform.machine()}, {_cpus()} CPUs, load {_load()}")

    try:
        from model.text.frontend import TextError, prepare_text

        try:
            ids = [s.ids for s in prepare_text(text, v.symbols)]
        except TextError as exc:
            raise _fail(str(exc)) from None
        have_text = True
    except ImportError as exc:  # no text front end here: ids of a typical length (~0.9 per character)
        out(f"note: text front end unavailable ({exc}); timing random phoneme ids instead of text")
        rng = np.random.default_rng(0)
        ids = [rng.integers(1, v.n_symbols, max(1, round(0.9 * len(p)))) for p in text.split(". ") if p]
        have_text = False
    t0 = time.perf_counter()
    features = [v.features([x], [spk], [1.0])[0] for x in ids]
    acoustic_s = time.perf_counter() - t0
    mel = np.concatenate([m for m, _ in features], axis=1)  # (n_mels, F): the whole text as one utterance
    f0 = np.concatenate([f for _, f in features])  # (F,) Hz, the teacher's excitation
    audio_s = mel.shape[1] * v.hop / v.sample_rate
    out(f"input: {len(text)} chars, {len(ids)} sentences, {audio_s:.2f} s of audio")
    record["input"] = {
        "chars": len(text),
        "sentences": len(ids),
        "audio_s": audio_s,
        "text_front_end": have_text,
    }

    rows: list[tuple[str, str]] = []
    student_rates: dict[int, float] = {}
    if "student" in v.models:
        request = SynthesisRequest(text, voice_name, speaker_name, seed=0)
        rng = np.random.default_rng(0)

        def pieces():  # the audio as it comes: the engine's chunks, or one vocoded sentence at a time
            if have_text:
                yield from (c.audio for c in engine.synthesize(request))
                return
            for x in ids:
                m = v.mels([x], [spk], [1.0])[0]
                yield v.vocode([m], [spk], [rng.standard_normal(m.shape[1] * v.hop, dtype=np.float32)])[0]

        times, cpu, ttfa = [], [], []
        for _ in range(runs):
            t0, c0 = time.perf_counter(), time.process_time()
            got = 0
            for piece in pieces():
                if not got:
                    ttfa.append(time.perf_counter() - t0)  # time to the first audio
                got += len(piece)
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        seconds = got / v.sample_rate
        rtf = [t / seconds for t in times]
        what = "text->audio" if have_text else "ids->audio"
        rows.append(
            (
                f"{what} RTF (acoustic+student)",
                f"best {min(rtf):.4f}  median {statistics.median(rtf):.4f}  ({runs} runs)",
            )
        )
        rows.append(
            (
                f"{what} CPU s per audio s",
                f"best {min(cpu) / seconds:.4f}  (all threads; less load-sensitive)",
            )
        )
        rows.append(
            (f"{what} first audio (TTFA)", f"best {min(ttfa):.4f} s  median {statistics.median(ttfa):.4f} s")
        )
        rows.append(("acoustic alone", f"{acoustic_s:.3f} s for {audio_s:.2f} s of audio"))
        record["rtf"] = {
            "input": what.split("->")[0],
            "runs": runs,
            "best": min(rtf),
            "median": statistics.median(rtf),
            "cpu_s_per_audio_s": min(cpu) / seconds,
            "ttfa_s": {"best": min(ttfa), "median": statistics.median(ttfa)},
        }
        record["acoustic_s"] = acoustic_s

        m = mel
        if student_seconds > 0:
            frames = max(1, round(student_seconds * v.sample_rate / v.hop))
            m = np.tile(mel, (1, -(-frames // mel.shape[1])))[:, :frames]
        samples = m.shape[1] * v.hop
        variants = [("", v.student)]
        if v.student.provider == CUDA:  # both precisions the bundle ships
            for role in ("student", "student_fp16"):
                if role in v.manifest.files and role != v.student.role:
                    variants.append(
                        ("", Graph(role, v.path / v.manifest.files[role].path, [v.student.provider], threads))
                    )
            variants = [(" " + ("fp16" if g.role.endswith("_fp16") else "fp32"), g) for _, g in variants]
        original = v.student
        try:
            for label, graph in variants:
                v.student = graph
                for b in batches:
                    z = [rng.standard_normal(samples, dtype=np.float32) for _ in range(b)]
                    v.vocode([m] * b, [spk] * b, z)  # this shape's first run
                    best, med = float("inf"), []
                    for _ in range(runs):
                        t0 = time.perf_counter()
                        v.vocode([m] * b, [spk] * b, z)
                        med.append(time.perf_counter() - t0)
                        best = min(best, med[-1])
                    rate = b * samples / best
                    if graph is original:  # what the engine serves with
                        student_rates[b] = rate
                    record["student"].append(
                        {
                            "precision": "fp16" if graph.role.endswith("_fp16") else "fp32",
                            "batch": b,
                            "samples_per_s": rate,
                            "median_samples_per_s": b * samples / statistics.median(med),
                            "best_ms": best * 1000,
                            "utterance_s": samples / v.sample_rate,
                            "served": graph is original,
                        }
                    )
                    rows.append(
                        (
                            f"student{label} samples/s (batch {b})",
                            f"{rate:,.0f}  (median {b * samples / statistics.median(med):,.0f}; "
                            f"{best * 1000:.1f} ms for {b} x {samples / v.sample_rate:.2f} s)",
                        )
                    )
        finally:
            v.student = original
    if "teacher" in v.models and teacher_seconds > 0:
        frames = max(1, min(mel.shape[1], round(teacher_seconds * v.sample_rate / v.hop)))
        rng = np.random.default_rng(0)
        t0 = time.perf_counter()
        n = sum(len(piece) for piece, _ in v.teacher(mel[:, :frames], spk, rng, f0=f0[:frames]))
        t = time.perf_counter() - t0
        teacher_rate = n / t
        record["teacher"] = {
            "samples_per_s": teacher_rate,
            "seconds": t,
            "audio_s": n / v.sample_rate,
            "rtf": t * v.sample_rate / n,
        }
        rows.append(
            (
                "teacher samples/s (batch 1)",
                f"{teacher_rate:,.0f}  ({t:.2f} s for {n / v.sample_rate:.2f} s, RTF {t * v.sample_rate / n:.2f})",
            )
        )
        if student_rates:
            b = min(student_rates)
            rows.append((f"student (batch {b}) / teacher speed", f"{student_rates[b] / teacher_rate:,.0f}x"))
            record["student_over_teacher"] = {"batch": b, "ratio": student_rates[b] / teacher_rate}
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    rows.append(("peak RSS", f"{peak:.0f} MiB"))
    record["peak_rss_mib"] = peak
    if as_json:
        typer.echo(bench_report.to_json(record))
        return
    width = max(len(k) for k, _ in rows)
    for k, val in rows:
        out(f"{k:<{width}}  {val}")


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 0)


def _load() -> str:
    import os

    try:
        return " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "?"
