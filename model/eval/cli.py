"""``parawave eval``: measure a shipped ONNX voice bundle against an LJSpeech-format corpus.

Torch-free: it runs the bundle through the service's own runtime (``service.engine``), so what is
measured is what is served. For the first ``--limit`` clips per speaker of a split:

1. **Intelligibility.** pocketsphinx (its bundled US English model, default config; 16 kHz int16
   mono) transcribes the corpus recording (the reference renderer), the student's text->audio and
   (on the first ``--teacher-limit`` clips per speaker) the teacher's text->audio. Text->audio is
   ``OnnxEngine.synthesize`` on the corpus's raw text, the server's path. WER (jiwer, pooled over
   clips) against the corpus's normalized text; both sides go through :func:`words` (the text front
   end's normalizer, lowercase, punctuation stripped). The reference's own WER is the baseline.
2. **Copy synthesis.** The ground-truth log-mel of the recording (``model.data.features.log_mel``
   with the bundle's audio config) -> student / teacher -> compared to the recording: PESQ wide
   band and STOI at 16 kHz, and the mel-cepstral distortion :func:`mcd` between the output's
   log-mel and the recording's (frames 1:1, copy synthesis keeps the length).
3. **Durations.** Length of the student's text->audio vs the recording's: mean / median absolute
   relative error and the fraction within 15 %.
4. **Speed.** Wall seconds per audio second of the student's (and teacher's) text->audio.

Outputs under ``--out``: ``eval.json`` (every number, per system, per speaker and per clip, plus
the configuration), ``eval.md`` (the summary table and the targets, also printed),
``spectrograms.png``, ``durations.png`` and ``examples/*.wav`` (first clip of every speaker).

Mel-cepstral distortion, as computed here: cepstra are the orthonormal DCT-II over the mel axis of
our log-mel (natural log of each band's RMS magnitude), coefficients c1..c13 (c0, the level, is
dropped); per frame ``MCD = 10 / ln 10 * sqrt(2 * sum_d (c_d - c'_d)^2)`` dB, averaged over the
frames where the recording is within 40 dB of its loudest frame (silence left out: a floor of
digital silence against a vocoder's faint hiss would dominate otherwise). Values are comparable
between runs of this tool, not with numbers from SPTK mel-cepstra.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import re
import time
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import typer

from service.settings import DEFAULT_VOICES_DIR

log = logging.getLogger(__name__)

ASR_RATE = 16_000  # pocketsphinx's en-us model, PESQ wide band
MCD_COEFFS = 13  # c1..c13
MCD_SILENCE_DB = 40.0  # frames this far below the loudest reference frame are left out of MCD
DURATION_TOLERANCE = 0.15
SYSTEMS = ("reference", "student", "teacher")
EVAL_PACKAGES = {  # import name -> distribution
    "pocketsphinx": "pocketsphinx",
    "pesq": "pesq",
    "pystoi": "pystoi",
    "jiwer": "jiwer",
    "matplotlib": "matplotlib",
    "soundfile": "soundfile",
}
# targets (eval.md): student WER within this of the reference's; vocoder quality floors
TARGET_WER_DELTA = 0.03
TARGET_PESQ = 3.5
TARGET_STOI = 0.95
TARGET_PESQ_GAP = 0.2  # student within this much PESQ of the teacher
TARGET_HNR_GAP = 2.0  # served voice HNR within this many dB of the recordings (issue 17 goal; 3 dB required)

app = typer.Typer(add_completion=False, help="Evaluate a voice: ASR WER, PESQ, STOI, MCD, durations.")


class EvalError(Exception):
    """Something the user must fix (voice, corpus, split, packages): one line, exit code 2."""


# ------------------------------------------------------------------------------------- metrics


def words(text: str) -> str:
    """Text as compared by WER: the front end's normalizer (numbers spelled out, abbreviations
    expanded), lowercase, punctuation stripped (apostrophes inside words kept), single spaces."""
    from model.text import normalize

    text = normalize(text).lower().replace("’", "'")
    text = re.sub(r"[^a-z0-9']+", " ", text)
    text = re.sub(r"(?<![a-z0-9])'|'(?![a-z0-9])", " ", text)  # quotes, not apostrophes
    return " ".join(text.split())


def wer_of(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Corpus-level WER (errors pooled over all pairs / reference words), both sides through
    :func:`words`; pairs whose reference has no words are left out. NaN when nothing is left."""
    import jiwer

    pairs = [(words(r), words(h)) for r, h in zip(refs, hyps, strict=True)]
    pairs = [(r, h) for r, h in pairs if r]
    if not pairs:
        return math.nan
    out = jiwer.process_words([r for r, _ in pairs], [h for _, h in pairs])
    return float(out.wer)


def to_asr_pcm(audio: np.ndarray, sr: int) -> np.ndarray:
    """(T,) float audio at ``sr`` -> (T',) int16 at 16 kHz (what pocketsphinx and PESQ take)."""
    from model.data.features import resample

    x = resample(np.asarray(audio, np.float32), sr, ASR_RATE)  # (T',)
    return (np.clip(x, -1.0, 1.0) * 32767.0).astype(np.int16)


@lru_cache(maxsize=1)
def _decoder():
    from pocketsphinx import Config, Decoder

    return Decoder(Config(loglevel="FATAL"))  # the bundled en-us acoustic model, LM and dictionary


def transcribe(audio: np.ndarray, sr: int) -> str:
    """pocketsphinx's best hypothesis for (T,) float audio at ``sr`` ('' when it hears nothing).

    The same audio gets the same transcript whatever was transcribed before it: the decoder is
    shared, but its feature state (the live cepstral-mean estimate, which otherwise carries over
    from the previous utterances and can change a word) is reset before each utterance."""
    pcm = to_asr_pcm(audio, sr)  # (T',) int16
    dec = _decoder()
    dec.reinit_feat()
    dec.start_utt()
    dec.process_raw(pcm.tobytes(), no_search=False, full_utt=True)
    dec.end_utt()
    hyp = dec.hyp()
    return hyp.hypstr.strip() if hyp is not None else ""


def cepstra(mel: np.ndarray, n: int = MCD_COEFFS) -> np.ndarray:
    """(n_mels, F) natural-log mel -> (n, F) cepstra c1..cn (orthonormal DCT-II over bands)."""
    import scipy.fft

    c = scipy.fft.dct(np.asarray(mel, np.float64), type=2, norm="ortho", axis=0)  # (n_mels, F)
    return c[1 : n + 1]


def speech_frames(mel: np.ndarray, db: float = MCD_SILENCE_DB) -> np.ndarray:
    """(F,) bool: frames of (n_mels, F) log-mel within ``db`` dB of the loudest frame."""
    m = np.asarray(mel, np.float64)
    level = 0.5 * np.log(np.mean(np.exp(2.0 * m), axis=0) + 1e-30)  # (F,) log RMS magnitude
    return level >= level.max() - db / (20.0 / math.log(10.0))


def mcd(
    mel_a: np.ndarray, mel_b: np.ndarray, n_coeffs: int = MCD_COEFFS, mask: np.ndarray | None = None
) -> float:
    """Mean mel-cepstral distortion (dB) between two (n_mels, F) log-mels aligned frame by frame
    (see the module doc); ``mask`` (F,) picks the frames averaged (default all). A frame or two of
    length difference is trimmed; more is an error (this is not a DTW measure)."""
    if mel_a.shape[0] != mel_b.shape[0]:
        raise ValueError(f"mel bands differ: {mel_a.shape} vs {mel_b.shape}")
    F = min(mel_a.shape[1], mel_b.shape[1])
    if abs(mel_a.shape[1] - mel_b.shape[1]) > 2:
        raise ValueError(f"mcd needs frame-aligned mels, got {mel_a.shape[1]} vs {mel_b.shape[1]} frames")
    n = min(n_coeffs, mel_a.shape[0] - 1)
    diff = cepstra(mel_a[:, :F], n) - cepstra(mel_b[:, :F], n)  # (n, F)
    per_frame = 10.0 / math.log(10.0) * np.sqrt(2.0 * np.sum(diff * diff, axis=0))  # (F,)
    if mask is not None:
        per_frame = per_frame[np.asarray(mask[:F], bool)]
    return float(per_frame.mean()) if per_frame.size else math.nan


def pesq_wb(ref: np.ndarray, deg: np.ndarray, sr: int) -> float:
    """PESQ wide band (ITU-T P.862.2) of ``deg`` against ``ref`` (both (T,) at ``sr``); NaN when
    PESQ refuses (e.g. no speech found)."""
    from pesq import pesq

    T = min(len(ref), len(deg))
    a = to_asr_pcm(ref[:T], sr).astype(np.float32) / 32767.0  # (T',) at 16 kHz
    b = to_asr_pcm(deg[:T], sr).astype(np.float32) / 32767.0
    try:
        return float(pesq(ASR_RATE, a, b, "wb"))
    except Exception as exc:  # pesq raises its own NoUtterancesError / BufferTooShortError / ...
        log.warning("PESQ failed (%s: %s); counted as missing", type(exc).__name__, exc)
        return math.nan


def stoi_of(ref: np.ndarray, deg: np.ndarray, sr: int) -> float:
    """STOI (0..1) of ``deg`` against ``ref``, both (T,) at ``sr``, trimmed to the shorter."""
    from pystoi import stoi

    T = min(len(ref), len(deg))
    try:
        return float(
            stoi(np.asarray(ref[:T], np.float64), np.asarray(deg[:T], np.float64), sr, extended=False)
        )
    except Exception as exc:
        log.warning("STOI failed (%s: %s); counted as missing", type(exc).__name__, exc)
        return math.nan


def duration_stats(predicted: Sequence[float], reference: Sequence[float]) -> dict[str, float | int]:
    """Relative duration errors (predicted - reference) / reference over clips."""
    p, r = np.asarray(predicted, np.float64), np.asarray(reference, np.float64)
    ok = r > 0
    rel = (p[ok] - r[ok]) / r[ok]
    if rel.size == 0:
        return {"clips": 0, "mean_abs_rel_error": math.nan, "median_abs_rel_error": math.nan,
                "mean_rel_error": math.nan, "within_15pct": math.nan}  # fmt: skip
    return {
        "clips": int(rel.size),
        "mean_abs_rel_error": float(np.mean(np.abs(rel))),
        "median_abs_rel_error": float(np.median(np.abs(rel))),
        "mean_rel_error": float(np.mean(rel)),  # > 0: the model speaks slower than the reference
        "within_15pct": float(np.mean(np.abs(rel) <= DURATION_TOLERANCE)),
    }


def nanmean(values: Iterable[float | None]) -> float:
    v = [x for x in values if x is not None and not math.isnan(x)]
    return float(np.mean(v)) if v else math.nan


# ------------------------------------------------------------------------------------- clips


@dataclass(frozen=True)
class Clip:
    id: str
    speaker: str  # corpus speaker name
    voice_speaker: str  # the bundle speaker that says it
    text: str  # raw text: what the server would be sent
    normalized: str  # the corpus's normalized text: the WER reference
    teacher: bool  # the teacher runs on this clip too


@dataclass
class ClipResult:
    id: str
    speaker: str
    reference_text: str
    teacher: bool
    transcripts: dict[str, str] = field(default_factory=dict)  # system -> ASR hypothesis
    # model -> ASR hypothesis of its copy synthesis (from the recording's mel): the vocoder's share
    # of the WER, apart from the acoustic model's
    copy_transcripts: dict[str, str] = field(default_factory=dict)
    copy: dict[str, dict[str, float]] = field(
        default_factory=dict
    )  # system -> pesq_wb, stoi, mcd_db, hnr_db, f0
    hnr: dict[str, float] = field(
        default_factory=dict
    )  # system (reference, text->audio of a model) -> HNR dB
    reference_seconds: float = 0.0
    tts_seconds: dict[str, float] = field(default_factory=dict)  # system -> text->audio length
    tts_wall_seconds: dict[str, float] = field(default_factory=dict)  # system -> synthesis wall time


def map_speakers(corpus_speakers: Sequence[str], voice_speakers: Sequence[str]) -> dict[str, str]:
    """Corpus speaker -> bundle speaker: same name; a single-speaker corpus whose name the bundle
    lacks (folder-named) is said by the bundle's default speaker; other unknown speakers are left out."""
    out = {s: s for s in corpus_speakers if s in voice_speakers}
    if not out and len(corpus_speakers) == 1:
        log.warning(
            "corpus speaker %r is not in the voice (speakers: %s); using its default speaker %r",
            corpus_speakers[0], ", ".join(voice_speakers), voice_speakers[0],
        )  # fmt: skip
        out = {corpus_speakers[0]: voice_speakers[0]}
    missing = [s for s in corpus_speakers if s not in out]
    if missing:
        log.warning("leaving out corpus speakers the voice lacks: %s", ", ".join(missing))
    return out


def select_clips(
    corpus,
    split: str,
    voice_speakers: Sequence[str],
    limit: int,
    teacher_limit: int,
    speakers: Sequence[str] | None = None,
) -> list[Clip]:
    """The first ``limit`` clips (0: all) per speaker of ``split``, in metadata order; the teacher
    on the first ``teacher_limit`` of them. Clips whose wav is missing are left out (warned)."""
    ids = corpus.ids(split)
    if not ids:
        raise EvalError(f"{corpus.path}: the {split!r} split has no clips")
    wanted = list(corpus.speakers) if not speakers else list(speakers)
    unknown = [s for s in wanted if s not in corpus.speakers]
    if unknown:
        raise EvalError(
            f"--speakers {','.join(unknown)}: not in the corpus (speakers: {', '.join(corpus.speakers)})"
        )
    mapping = map_speakers(wanted, voice_speakers)
    taken: dict[str, int] = {}
    out: list[Clip] = []
    for clip_id in ids:
        row = corpus.by_id[clip_id]
        if row.speaker not in mapping or (limit > 0 and taken.get(row.speaker, 0) >= limit):
            continue
        if not corpus.wav_path(clip_id).is_file():
            log.warning("%s: missing; clip left out", corpus.wav_path(clip_id))
            continue
        k = taken.get(row.speaker, 0)
        taken[row.speaker] = k + 1
        out.append(
            Clip(clip_id, row.speaker, mapping[row.speaker], row.text, row.normalized, k < teacher_limit)
        )
    if not out:
        raise EvalError(f"{corpus.path}: no clips of the {split!r} split for speakers {', '.join(wanted)}")
    return out


def clip_seed(seed: int, clip_id: str) -> int:
    """Noise seed of one clip: the same for a clip whatever else is evaluated with it."""
    return (seed * 1_000_003 + zlib.crc32(clip_id.encode("utf-8"))) % 2**32


# ------------------------------------------------------------------------------------- synthesis


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


def copy_inputs(ref: np.ndarray, cfg) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A recording (T,) -> what copy synthesis takes and is scored against: (the recording cut to
    what the mel describes (F * hop,), its log-mel (n_mels, F), its Praat F0 (F,) Hz)."""
    from model.data.features import log_mel
    from model.data.pitch import track_f0

    mel = log_mel(ref, cfg)  # (n_mels, F)
    ref_cut = ref[: mel.shape[1] * cfg.hop_length]  # (F * hop,)
    return ref_cut, mel, track_f0(ref_cut, cfg)


def copy_scores(ref: np.ndarray, out: np.ndarray, ref_f0: np.ndarray, cfg) -> dict[str, float]:
    """How a vocoder's copy synthesis (T,) matches the recording (T,) it was vocoded from and that
    recording's F0 (F,) Hz: PESQ-WB, STOI, the output's HNR, and its F0 error against ``ref_f0``
    (:func:`model.eval.voicing.f0_error`: f0_rmse_cents, f0_bias_cents, voicing_error)."""
    from model.data.pitch import track_f0
    from model.eval.voicing import f0_error, hnr_db

    return {
        "pesq_wb": pesq_wb(ref, out, cfg.sample_rate),
        "stoi": stoi_of(ref, out, cfg.sample_rate),
        "hnr_db": hnr_db(out, cfg.sample_rate),
        **f0_error(ref_f0, track_f0(out, cfg)),
    }


def copy_synthesis(
    voice,
    mel: np.ndarray,
    speaker: int,
    model: str,
    seed: int,
    f0: np.ndarray | None = None,
    temperature: float | None = None,
) -> np.ndarray:
    """Ground-truth mel (n_mels, F) [+ the recording's F0 (F,), for the vocoder's excitation] ->
    (F * hop,) audio with the student or the teacher (sampling at ``temperature``; None: the voice's
    own default, what the service samples at)."""
    rng = np.random.default_rng(seed)
    if model == "student":
        z = rng.standard_normal(mel.shape[1] * voice.hop, dtype=np.float32)  # (F * hop,)
        return voice.vocode([mel], [speaker], [z], [f0])[0]
    pieces = [p for p, _ in voice.teacher(mel, speaker, rng, f0=f0, temperature=temperature)]
    return np.concatenate(pieces) if pieces else np.zeros(0, np.float32)


def evaluate_clip(engine, voice, cfg, corpus_dir: Path, clip: Clip, systems: Sequence[str], seed: int):
    """Synthesize and score one clip -> (ClipResult, Audio)."""
    from model.data.features import load_clip_audio, log_mel
    from model.eval.voicing import hnr_db

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


# ------------------------------------------------------------------------------------- summary


def summarize_system(results: Sequence[ClipResult], system: str) -> dict[str, Any]:
    """Numbers of one system over the clips it ran on."""
    rs = [r for r in results if system in r.transcripts]
    out: dict[str, Any] = {
        "clips": len(rs),
        "wer": wer_of([r.reference_text for r in rs], [r.transcripts[system] for r in rs]),
        "hnr_db": nanmean(r.hnr.get(system, math.nan) for r in rs),  # text->audio (reference: the recording)
    }
    if system == "reference":
        return out
    for key in ("pesq_wb", "stoi", "mcd_db", "hnr_db", "f0_rmse_cents", "f0_bias_cents", "voicing_error"):
        out["copy_" + key if key == "hnr_db" else key] = nanmean(
            r.copy[system].get(key, math.nan) for r in rs
        )
    with_copy = [r for r in rs if system in r.copy_transcripts]
    out["copy_wer"] = (
        wer_of([r.reference_text for r in with_copy], [r.copy_transcripts[system] for r in with_copy])
        if with_copy
        else math.nan
    )
    out["durations"] = duration_stats([r.tts_seconds[system] for r in rs], [r.reference_seconds for r in rs])
    audio_s = sum(r.tts_seconds[system] for r in rs)
    out["rtf"] = sum(r.tts_wall_seconds[system] for r in rs) / audio_s if audio_s else math.nan
    return out


def summarize(results: Sequence[ClipResult], systems: Sequence[str]) -> dict[str, Any]:
    """Per system (all its clips), per speaker, and the paired student/teacher comparison."""
    by_system = {s: summarize_system(results, s) for s in systems}
    speakers = sorted({r.speaker for r in results})
    by_speaker = {
        spk: {s: summarize_system([r for r in results if r.speaker == spk], s) for s in systems}
        for spk in speakers
    }
    out: dict[str, Any] = {"systems": by_system, "speakers": by_speaker}
    if "teacher" in systems:  # the same clips for both sides of a comparison
        paired = [r for r in results if r.teacher]
        out["teacher_clips"] = {s: summarize_system(paired, s) for s in systems}
    return out


def targets(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The acceptance targets: name, value, goal, pass (None when it could not be measured)."""
    sysm = summary["systems"]
    student, ref = sysm.get("student"), sysm["reference"]
    out: list[dict[str, Any]] = []

    def add(name: str, value: float, goal: str, ok: bool) -> None:
        out.append({"name": name, "value": value, "goal": goal, "pass": None if math.isnan(value) else ok})

    if student is not None:
        delta = student["wer"] - ref["wer"]
        add("student WER - reference WER", delta, f"<= {TARGET_WER_DELTA}", delta <= TARGET_WER_DELTA)
        add("student PESQ-WB", student["pesq_wb"], f">= {TARGET_PESQ}", student["pesq_wb"] >= TARGET_PESQ)
        add("student STOI", student["stoi"], f">= {TARGET_STOI}", student["stoi"] >= TARGET_STOI)
        gap = abs(student["hnr_db"] - ref["hnr_db"])
        add(
            "|student HNR - reference HNR| (text->audio, dB)",
            gap,
            f"<= {TARGET_HNR_GAP}",
            gap <= TARGET_HNR_GAP,
        )
    paired = summary.get("teacher_clips")
    if student is not None and paired is not None:
        gap = paired["teacher"]["pesq_wb"] - paired["student"]["pesq_wb"]
        add(
            f"teacher PESQ-WB - student PESQ-WB ({paired['teacher']['clips']} teacher clips)",
            gap, f"<= {TARGET_PESQ_GAP}", gap <= TARGET_PESQ_GAP,
        )  # fmt: skip
    return out


def _fmt(x: Any, spec: str = ".3f") -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    return format(x, spec)


def render_markdown(report: dict[str, Any]) -> str:
    """eval.md: the summary table, the targets and the per-speaker table."""
    cfg, summary = report["config"], report["summary"]
    systems = [s for s in SYSTEMS if s in summary["systems"]]
    lines = [
        f"# parawave eval: voice `{cfg['voice']}` on `{cfg['corpus']}` ({cfg['split']} split)",
        "",
        "| system | clips | WER | HNR (dB) | copy WER | PESQ-WB | STOI | MCD (dB) | copy HNR (dB) "
        "| copy F0 error (cents) | copy voicing error | duration error |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in systems:
        m = summary["systems"][s]
        dur = "—"
        if s == "student":
            d = m["durations"]
            dur = f"{_fmt(100 * d['mean_abs_rel_error'], '.1f')} % ({_fmt(100 * d['within_15pct'], '.0f')} % within 15 %)"
        lines.append(
            f"| {s} | {m['clips']} | {_fmt(m['wer'])} | {_fmt(m.get('hnr_db'), '.1f')} | "
            f"{_fmt(m.get('copy_wer'))} | {_fmt(m.get('pesq_wb'), '.2f')} | {_fmt(m.get('stoi'))} | {_fmt(m.get('mcd_db'), '.2f')} | "
            f"{_fmt(m.get('copy_hnr_db'), '.1f')} | {_fmt(m.get('f0_rmse_cents'), '.0f')} | "
            f"{_fmt(m.get('voicing_error'))} | {dur} |"
        )
    lines += [
        "",
        "WER: pocketsphinx (en-us) transcripts vs the corpus's normalized text, pooled over clips. "
        "HNR: Praat's harmonics-to-noise ratio (parselmouth, cross-correlation, mean over measurable "
        "frames) of the text->audio output (reference: the recording). "
        "Copy WER, PESQ-WB, STOI, MCD, copy HNR / F0 error / voicing error: copy synthesis from the recording's mel "
        "(and its Praat F0 for the vocoders' excitation); F0 error: RMS cents on frames voiced in both. "
        "Duration error: mean |relative error| of the text->audio length.",
    ]
    if "teacher_clips" in summary:
        p = summary["teacher_clips"]
        lines.append(
            f"On the {p['teacher']['clips']} teacher clips: WER reference {_fmt(p['reference']['wer'])}, "
            f"student {_fmt(p['student']['wer'])}, teacher {_fmt(p['teacher']['wer'])}; "
            f"PESQ-WB student {_fmt(p['student']['pesq_wb'], '.2f')}, teacher {_fmt(p['teacher']['pesq_wb'], '.2f')}."
        )
    speed = summary["systems"].get("student", {}).get("rtf")
    if speed is not None:
        t = summary["systems"].get("teacher", {}).get("rtf")
        lines.append(
            f"Speed (text->audio, wall s per audio s, {cfg['device']}): student {_fmt(speed)}"
            + (f", teacher {_fmt(t)}" if t is not None else "")
            + "."
        )
    lines += ["", "Targets:", ""]
    for t in report["targets"]:
        mark = {True: "PASS", False: "FAIL", None: "n/a"}[t["pass"]]
        lines.append(f"- **{mark}** {t['name']} = {_fmt(t['value'])} (target {t['goal']})")
    if "teacher" not in systems:
        lines.append("- **n/a** student within 0.2 PESQ-WB of the teacher (no teacher run)")
    lines += [
        "",
        "Per speaker:",
        "",
        "| speaker | system | clips | WER | PESQ-WB | STOI | MCD (dB) | duration error |",
    ]
    lines.append("|---|---|---:|---:|---:|---:|---:|---:|")
    for spk, per in summary["speakers"].items():
        for s in systems:
            m = per[s]
            d = m.get("durations")
            dur = f"{_fmt(100 * d['mean_abs_rel_error'], '.1f')} %" if s == "student" and d else "—"
            lines.append(
                f"| {spk} | {s} | {m['clips']} | {_fmt(m['wer'])} | {_fmt(m.get('pesq_wb'), '.2f')} | "
                f"{_fmt(m.get('stoi'))} | {_fmt(m.get('mcd_db'), '.2f')} | {dur} |"
            )
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------- outputs


def plot_spectrograms(path: Path, cfg, panels: Sequence[tuple[str, np.ndarray]], title: str) -> None:
    """One log-mel image per (label, audio (T,)) panel, stacked, on a shared colour scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from model.data.features import log_mel

    mels = [log_mel(a, cfg) for _, a in panels]  # (n_mels, F_i) each
    vmax = max(float(m.max()) for m in mels if m.size)
    fig, axes = plt.subplots(  # one time axis for all: a text->audio that is too short looks short
        len(panels),
        1,
        figsize=(10, 2.0 * len(panels) + 0.6),
        squeeze=False,
        sharex=True,
        layout="constrained",
    )
    for ax, (label, _), m in zip(axes[:, 0], panels, mels, strict=True):
        t = m.shape[1] * cfg.hop_length / cfg.sample_rate
        im = ax.imshow(
            m, origin="lower", aspect="auto", extent=(0, t, 0, m.shape[0]), vmin=vmax - 12, vmax=vmax
        )
        ax.set_title(label, fontsize=9)
        ax.set_ylabel("mel band")
    axes[-1, 0].set_xlim(0, max(m.shape[1] for m in mels) * cfg.hop_length / cfg.sample_rate)
    axes[-1, 0].set_xlabel("seconds")
    fig.colorbar(im, ax=axes[:, 0].tolist(), label="log magnitude")
    fig.suptitle(title, fontsize=10)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_durations(path: Path, results: Sequence[ClipResult]) -> None:
    """Predicted (student text->audio) vs reference clip duration, one colour per speaker."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 5))
    for spk in sorted({r.speaker for r in results}):
        rs = [r for r in results if r.speaker == spk and "student" in r.tts_seconds]
        ax.scatter([r.reference_seconds for r in rs], [r.tts_seconds["student"] for r in rs], s=14, label=spk)
    top = max(
        [r.reference_seconds for r in results] + [max(r.tts_seconds.values(), default=0) for r in results]
    )
    x = np.array([0.0, top * 1.05])
    ax.plot(x, x, "k-", lw=0.8, label="equal")
    for f in (1 - DURATION_TOLERANCE, 1 + DURATION_TOLERANCE):
        ax.plot(x, f * x, "k--", lw=0.6)
    ax.set_xlabel("reference duration (s)")
    ax.set_ylabel("predicted duration, student text->audio (s)")
    ax.set_title(f"durations (dashed: ±{DURATION_TOLERANCE:.0%})", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


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


def _json_safe(x: Any) -> Any:
    if isinstance(x, float):
        return None if math.isnan(x) or math.isinf(x) else x
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_json_safe(v) for v in x]
    return x


def _versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {}
    for dist in ("pocketsphinx", "pesq", "pystoi", "jiwer", "onnxruntime", "parawave"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = None
    return out


# ------------------------------------------------------------------------------------- the run


def check_packages() -> None:
    import importlib.util

    missing = [dist for mod, dist in EVAL_PACKAGES.items() if importlib.util.find_spec(mod) is None]
    if missing:
        raise EvalError(f"missing packages for eval: {', '.join(missing)} (pip install -e '.[eval]')")


def find_bundle(voice: str, voices_dir: Path) -> Path:
    """``voices_dir/<voice>`` (or ``voice`` itself when it is a bundle folder)."""
    from service.loading import find_bundle as find
    from service.types import EngineLoadError

    try:
        return find(voice, voices_dir)
    except EngineLoadError as exc:
        raise EvalError(str(exc)) from None


def load_voice(path: Path, device: str):
    """(engine, voice) for one bundle; EvalError on a broken bundle."""
    from service.engine import OnnxEngine
    from service.loading import open_voice
    from service.settings import get_settings
    from service.types import EngineLoadError

    knobs = get_settings()  # the engine knobs of PARAWAVE_* / .env, as the service would use them
    try:
        voice = open_voice(
            path,
            device=device,
            gpu_mem_limit_mb=knobs.gpu_mem_limit_mb,
            student_threads=knobs.student_threads,
            ort_spin=knobs.ort_spin,
        )
    except EngineLoadError as exc:
        raise EvalError(f"cannot load voice {path}: {exc}") from None
    return OnnxEngine([voice], max_batch=1), voice


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
    report = _json_safe(report)  # NaN (not measured) -> null
    (out / "eval.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (out / "eval.md").write_text(md, encoding="utf-8")
    report["markdown"] = md
    return report


@app.command()
def main(
    voice: str = typer.Option(
        ..., "--voice", help="Voice bundle name (a folder of --voices-dir) or a bundle path."
    ),
    voices_dir: Path = typer.Option(DEFAULT_VOICES_DIR, "--voices-dir", help="Folder of voice bundles."),
    data: Path = typer.Option(..., "--data", help="LJSpeech-format corpus folder (metadata.csv, wavs/)."),
    split: str = typer.Option("test", help="train | val | test."),
    limit: int = typer.Option(50, min=0, help="Clips per speaker (0: all)."),
    teacher_limit: int = typer.Option(5, min=0, help="Clips per speaker the slow teacher runs on (0: none)."),
    out: Path | None = typer.Option(None, help="Output folder (default: runs/eval/<voice>)."),
    speakers: str | None = typer.Option(None, help="Comma-separated corpus speakers (default: all)."),
    seed: int = typer.Option(0, help="Noise seed (same seed, same numbers)."),
    device: str = typer.Option("cpu", help="auto | cpu | cuda (the teacher always runs on the CPU)."),
) -> None:
    """Evaluate a voice bundle on a corpus split: ASR WER, PESQ-WB, STOI, MCD, durations, speed."""
    try:
        check_packages()
        if split not in ("train", "val", "test"):
            raise EvalError(f"--split must be train, val or test, got {split!r}")
        bundle = find_bundle(voice, voices_dir)
        chosen = [s.strip() for s in speakers.split(",") if s.strip()] if speakers else None
        out_dir = out if out is not None else Path("runs") / "eval" / bundle.name
        report = run_eval(
            bundle, data, out_dir, split=split, limit=limit, teacher_limit=teacher_limit,
            speakers=chosen, seed=seed, device=device,
        )  # fmt: skip
    except EvalError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from None
    typer.echo(report["markdown"])
    typer.echo(f"wrote {out_dir}/eval.json, eval.md, spectrograms.png, durations.png, examples/", err=True)
