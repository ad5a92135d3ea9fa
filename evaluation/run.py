"""One ``parawave eval`` run: each clip synthesized (the served text->audio path and copy
synthesis) and scored, then the outputs under the output folder (eval.json, eval.md, the figures,
example wavs)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from evaluation.clips import Clip, ClipResult, clip_seed, select_clips
from evaluation.copy_synthesis import copy_inputs, copy_scores, copy_synthesis
from evaluation.errors import EvalError
from evaluation.metrics import MCD_COEFFS, MCD_SILENCE_DB, mcd, speech_frames, transcribe
from evaluation.plots import plot_durations, plot_spectrograms
from evaluation.report import json_safe, render_markdown, summarize, targets
from evaluation.voices import load_voice

log = logging.getLogger(__name__)


@dataclass
class Audio:
    """The audio of one clip, every system (float32 (T,) at the bundle rate)."""

    reference: np.ndarray
    mel: np.ndarray  # (n_mels, F) ground truth log-mel of the reference
    copy: dict[str, np.ndarray] = field(default_factory=dict)
    tts: dict[str, np.ndarray] = field(default_factory=dict)


def text_to_audio(engine, voice, clip: Clip, model: str, seed: int) -> tuple[np.ndarray, float]:
    """The served path: ``OnnxEngine.synthesize`` -> (audio (T,), wall seconds)."""
    from service.types import SynthesisRequest

    req = SynthesisRequest(clip.text, voice.name, clip.voice_speaker, 1.0, model, seed)  # type: ignore[arg-type]
    t0 = time.perf_counter()
    pieces = [c.audio for c in engine.synthesize(req)]
    wall = time.perf_counter() - t0
    return (np.concatenate(pieces) if pieces else np.zeros(0, np.float32)), wall


def evaluate_clip(engine, voice, cfg, corpus_dir: Path, clip: Clip, systems: Sequence[str], seed: int):
    """Synthesize and score one clip -> (ClipResult, Audio)."""
    from evaluation.voicing import hnr_db
    from model.data.features import load_clip_audio, log_mel

    ref = load_clip_audio(corpus_dir, clip.id, cfg)  # (T,) at the bundle rate
    ref_cut, mel, ref_f0 = copy_inputs(ref, cfg)  # (F * hop,), (n_mels, F), (F,) Hz: the vocoders' excitation
    spk = voice.speaker_id(clip.voice_speaker)
    res = ClipResult(clip.id, clip.speaker, clip.normalized, clip.teacher)
    res.reference_seconds = len(ref) / cfg.sample_rate
    res.transcripts["reference"] = transcribe(ref, cfg.sample_rate)
    res.hnr["reference"] = hnr_db(ref, cfg.sample_rate)
    audio = Audio(ref, mel)
    mask = speech_frames(mel)  # (F,)
    s = clip_seed(seed, clip.id)
    for model in systems:
        copy = copy_synthesis(voice, mel, spk, model, s, ref_f0)  # (F * hop,)
        audio.copy[model] = copy
        res.copy[model] = {
            **copy_scores(ref_cut, copy, ref_f0, cfg),
            "mcd_db": mcd(log_mel(copy, cfg), mel, mask=mask),
        }
        res.copy_transcripts[model] = transcribe(copy, cfg.sample_rate)
        tts, wall = text_to_audio(engine, voice, clip, model, s)
        audio.tts[model] = tts
        res.tts_seconds[model] = len(tts) / cfg.sample_rate
        res.tts_wall_seconds[model] = wall
        res.hnr[model] = hnr_db(tts, cfg.sample_rate)
        res.transcripts[model] = transcribe(tts, cfg.sample_rate) if len(tts) else ""
    return res, audio


def write_examples(folder: Path, clip: Clip, audio: Audio, sr: int) -> list[str]:
    """Reference, copy synthesis and text->audio wavs of one clip; returns the file names."""
    from model.data.audio import save_wav

    folder.mkdir(parents=True, exist_ok=True)
    named = {"reference": audio.reference}
    named.update({f"{m}_copy": a for m, a in audio.copy.items()})
    named.update({f"{m}_tts": a for m, a in audio.tts.items()})
    out = []
    for kind, a in named.items():
        name = f"{clip.speaker}_{clip.id}_{kind}.wav"
        save_wav(folder / name, a, sr)
        out.append(name)
    return out


def _versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {}
    for dist in ("pocketsphinx", "pesq", "pystoi", "jiwer", "onnxruntime", "parawave"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = None
    return out


def run_eval(
    bundle: Path,
    data: Path,
    out: Path,
    *,
    split: str = "test",
    limit: int = 50,
    teacher_limit: int = 5,
    speakers: Sequence[str] | None = None,
    seed: int = 0,
    device: str = "cpu",
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate ``bundle`` on ``data``; write the outputs under ``out``; return the report."""
    from tqdm import tqdm

    from model.data.config import AudioConfig
    from model.data.corpus import Corpus, CorpusError
    from service.types import InputError

    if not data.is_dir():
        raise EvalError(f"corpus {data}: no such folder")
    try:
        corpus = Corpus(data)
        engine, voice = load_voice(bundle, device)
        clips = select_clips(corpus, split, voice.speakers, limit, teacher_limit, speakers)
    except CorpusError as exc:
        raise EvalError(str(exc)) from None
    cfg = AudioConfig.from_dict(dataclasses.asdict(voice.manifest.audio))
    has_student, has_teacher = "student" in voice.models, "teacher" in voice.models and teacher_limit > 0
    log.info(
        "eval %s on %s (%s): %d clips, teacher on %d", voice.name, data, split, len(clips),
        sum(c.teacher for c in clips) if has_teacher else 0,
    )  # fmt: skip
    engine.warmup()
    out.mkdir(parents=True, exist_ok=True)
    results: list[ClipResult] = []
    first_audio: dict[str, tuple[Clip, Audio]] = {}  # speaker -> its first clip
    for clip in tqdm(clips, desc="eval", unit="clip", disable=None if progress else True):
        systems = [m for m, on in (("student", has_student), ("teacher", has_teacher and clip.teacher)) if on]
        try:
            res, audio = evaluate_clip(engine, voice, cfg, corpus.path, clip, systems, seed)
        except InputError as exc:
            log.warning("%s: left out (%s)", clip.id, exc)
            continue
        results.append(res)
        first_audio.setdefault(clip.speaker, (clip, audio))
    if not results:
        raise EvalError("no clip could be evaluated")
    systems = ["reference"] + [s for s, on in (("student", has_student), ("teacher", has_teacher)) if on]
    systems = [s for s in systems if any(s in r.transcripts for r in results)]
    summary = summarize(results, systems)
    examples = []
    for clip, audio in first_audio.values():
        examples += write_examples(out / "examples", clip, audio, cfg.sample_rate)
    clip0, audio0 = next(iter(first_audio.values()))
    panels = [("reference (recording)", audio0.reference)]
    panels += [(f"{m}: copy synthesis (recording's mel)", a) for m, a in audio0.copy.items()]
    panels += [(f"{m}: text->audio", a) for m, a in audio0.tts.items()]
    plot_spectrograms(
        out / "spectrograms.png", cfg, panels, f"{clip0.id} ({clip0.speaker}): {clip0.text[:80]}"
    )
    plot_durations(out / "durations.png", results)
    prov = voice.manifest.provenance
    report = {
        "config": {
            "voice": voice.name,
            "bundle": str(bundle.resolve()),
            "voice_json_sha256": hashlib.sha256((bundle / "voice.json").read_bytes()).hexdigest(),
            "files_sha256": {role: f.sha256 for role, f in voice.manifest.files.items()},
            "steps": dict(prov.steps),
            "trained_on": prov.corpus,
            "git_commit": prov.git_commit,
            "bundle_date": prov.date,
            "corpus": str(data.resolve()),
            "split": split,
            "limit": limit,
            "teacher_limit": teacher_limit if has_teacher else 0,
            "speakers": sorted({c.speaker for c in clips}),
            "speaker_map": {c.speaker: c.voice_speaker for c in clips},
            "seed": seed,
            "device": voice.student.provider if voice.student is not None else "CPUExecutionProvider",
            "clip_ids": [r.id for r in results],
            "teacher_clip_ids": [r.id for r in results if "teacher" in r.transcripts],
            "asr": "pocketsphinx default config (bundled en-us model), 16 kHz",
            "mcd": f"c1..c{MCD_COEFFS}, ortho DCT-II of natural-log mel, frames within {MCD_SILENCE_DB:g} dB of peak",
            "versions": _versions(),
        },
        "summary": summary,
        "targets": targets(summary),
        "clips": [dataclasses.asdict(r) for r in results],
        "files": {
            "markdown": "eval.md",
            "spectrograms": "spectrograms.png",
            "durations": "durations.png",
            "examples": [f"examples/{n}" for n in examples],
        },
    }
    md = render_markdown(report)
    report = json_safe(report)  # NaN (not measured) -> null
    (out / "eval.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (out / "eval.md").write_text(md, encoding="utf-8")
    report["markdown"] = md
    return report
