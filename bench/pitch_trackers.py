"""Which F0 tracker for the corpus: Praat (parselmouth) against WORLD's Harvest and DIO (pyworld).

    python -m bench.pitch_trackers [--data data/flite] [--clips 10] [--synthetic 24] [--seed 0]

Two measurements, both at the mel frame contract of :mod:`model.data.pitch` (one value per hop,
at the frame centre):

1. **Known F0** (ground truth). There is no natural-speech corpus with reference pitch on this
   machine, so the natural-speech conditions are built: source-filter utterances with an exact F0
   contour (declination, accents, a creaky low stretch for the low voices), cycle-to-cycle jitter
   and shimmer, aspiration noise, a glottal-like harmonic source through moving formant resonators,
   fricatives, bursts and silences between syllables; then heard clean, in white noise at 20 dB
   SNR, in pink noise at 10 dB and in a reverberant room (RT60 0.5 s). Scored frames lie wholly
   inside a voiced or an unvoiced stretch (boundary frames are ambiguous and left out).
2. **The corpus** (no ground truth): on ``--clips`` validation clips per speaker, the frames where
   Praat and Harvest agree on the clean recording (both unvoiced, or both voiced within 50 cents)
   form a consensus reference; every tracker is scored against it on the clean recording and on
   the same degradations. Agreement between the two on the clean corpus is printed too.

Columns: GPE (gross pitch error: reference-voiced frames the tracker calls voiced but more than
20 % off, over reference-voiced frames), VDE (voicing decisions that differ, over scored frames),
FFE (frames with either error, over scored frames), fine error (RMS cents on voiced-both frames
without a gross error) and speed (tracker seconds per second of audio, on this machine as loaded
as it was). Needs ``pyworld`` (``pip install pyworld``; its 0.3.5 imports ``pkg_resources``, so it
also needs ``setuptools<81``); without it only Praat is measured.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import signal

from model.data.config import AudioConfig
from model.data.pitch import PitchConfig, track_f0

log = logging.getLogger(__name__)

Tracker = Callable[[np.ndarray], np.ndarray]  # (T,) audio -> (F,) Hz, 0 = unvoiced

VOWELS = [(730, 1090, 2440), (270, 2290, 3010), (300, 870, 2240), (530, 1840, 2480), (570, 840, 2410)]
GROSS = 0.2  # relative error beyond which a pitch value is a gross error
AGREE_CENTS = 50.0


# ----------------------------------------------------------------------------- trackers


def trackers(cfg: AudioConfig, pitch: PitchConfig) -> dict[str, Tracker]:
    """The trackers to compare, each returning one value per mel frame."""
    out: dict[str, Tracker] = {"praat": lambda x: track_f0(x, cfg, pitch)}
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pyworld
    except ImportError as exc:
        log.warning("pyworld not importable (%s): measuring Praat only", exc)
        return out
    half_ms = cfg.hop_length / cfg.sample_rate * 1000 / 2  # frame f's centre is WORLD frame 2f+1

    def world(estimate: str) -> Tracker:
        def run(x: np.ndarray) -> np.ndarray:
            x64 = np.ascontiguousarray(x, dtype=np.float64)
            opts = {"f0_floor": pitch.floor, "f0_ceil": pitch.ceiling, "frame_period": half_ms}
            if estimate == "harvest":
                f0, _ = pyworld.harvest(x64, cfg.sample_rate, **opts)
            else:
                f0, t = pyworld.dio(x64, cfg.sample_rate, **opts)
                f0 = pyworld.stonemask(x64, f0, t, cfg.sample_rate)
            n = x.shape[0] // cfg.hop_length
            idx = 2 * np.arange(n) + 1  # (F,)
            out = np.zeros(n, dtype=np.float32)
            ok = idx < f0.shape[0]
            out[ok] = f0[idx[ok]]
            return out

        return run

    out["harvest"] = world("harvest")
    out["dio+stonemask"] = world("dio")
    return out


# ----------------------------------------------------------------------------- known-F0 speech


@dataclass(frozen=True)
class Utterance:
    audio: np.ndarray  # (T,) float32
    f0: np.ndarray  # (F,) Hz, true F0 at the frame centres (meaningful where voiced)
    label: np.ndarray  # (F,) int8: 1 voiced, 0 unvoiced, -1 boundary (not scored)


def _resonate(x: np.ndarray, formants: tuple[int, ...], sr: int, scale: float) -> np.ndarray:
    for i, f in enumerate(formants):
        f = f * scale
        bw = 60.0 + 30.0 * i
        r = np.exp(-np.pi * bw / sr)
        a = [1.0, -2 * r * np.cos(2 * np.pi * f / sr), r * r]
        x = signal.lfilter([1.0 - r], a, x)
    return x


def synthetic_utterance(rng: np.random.Generator, cfg: AudioConfig, low: bool) -> Utterance:
    """A ~3 s source-filter utterance with its exact F0 and voicing per mel frame."""
    sr, hop = cfg.sample_rate, cfg.hop_length
    segments: list[tuple[str, int]] = [("silence", int(0.15 * sr))]
    while sum(n for _, n in segments) < 3 * sr:
        segments.append(("voiced", int(rng.uniform(0.12, 0.35) * sr)))
        segments.append(
            (str(rng.choice(["silence", "fricative", "burst"])), int(rng.uniform(0.05, 0.15) * sr))
        )
    total = sum(n for _, n in segments)
    t = np.arange(total) / sr  # (T,) s

    base = rng.uniform(90, 125) if low else rng.uniform(170, 250)
    semis = -2.0 * t / t[-1]  # declination
    for centre in rng.uniform(0, t[-1], size=4):  # accents
        semis += rng.uniform(-3, 4) * np.exp(-0.5 * ((t - centre) / 0.12) ** 2)
    semis += 0.3 * np.sin(2 * np.pi * rng.uniform(4, 6) * t)  # slow wobble
    f0_true = base * 2.0 ** (semis / 12)  # (T,) Hz
    if low:  # a creaky stretch near the end, down to ~65 Hz (above the trackers' 60 Hz floor)
        start = int(rng.uniform(0.6, 0.75) * total)
        span = np.arange(total - start)
        dip = np.clip(span / (0.1 * sr), 0, 1) * np.clip((0.5 * sr - span) / (0.1 * sr), 0, 1)
        f0_true[start:] = f0_true[start:] * (1 - dip) + rng.uniform(64, 72) * dip

    # the source: harmonics of a jittered phase (period and amplitude redrawn every cycle)
    inst = np.empty(total)
    amp = np.empty(total)
    phase, jit, shim = 0.0, 1.0, 1.0
    for i in range(total):
        inst[i] = f0_true[i] * jit
        amp[i] = shim
        phase += inst[i] / sr
        if phase >= 1.0:
            phase -= 1.0
            jit = 1.0 + rng.normal(0, 0.008)
            shim = 1.0 + rng.normal(0, 0.06)
    cycles = np.cumsum(inst) / sr  # (T,) cycles
    harmonics = int(0.95 * sr / 2 / inst.max())
    k = np.arange(1, harmonics + 1)[:, None]  # (K, 1)
    source = (np.sin(2 * np.pi * k * cycles[None, :]) * k**-1.4).sum(0) * amp  # (T,)
    source += 0.02 * rng.standard_normal(total)  # aspiration

    audio = np.zeros(total)
    voiced = np.zeros(total, dtype=bool)
    pos = 0
    scale = 1.0 if low else 1.15
    fade = int(0.015 * sr)
    for kind, n in segments:
        seg = slice(pos, pos + n)
        if kind == "voiced":
            x = _resonate(source[seg], VOWELS[rng.integers(len(VOWELS))], sr, scale)
            ramp = np.ones(n)
            ramp[:fade] = 0.5 - 0.5 * np.cos(np.pi * np.arange(fade) / fade)
            ramp[-fade:] = ramp[:fade][::-1]
            audio[seg] = x / (np.abs(x).max() + 1e-9) * ramp
            voiced[pos + fade : pos + n - fade] = True
        elif kind == "fricative":
            sos = signal.butter(4, [2500, 6500], btype="bandpass", fs=sr, output="sos")
            audio[seg] = 0.15 * signal.sosfilt(sos, rng.standard_normal(n))
        elif kind == "burst":
            m = min(n, int(0.02 * sr))
            audio[pos : pos + m] = 0.3 * rng.standard_normal(m) * np.exp(-np.arange(m) / (0.004 * sr))
        pos += n

    n_frames = total // hop
    frames = voiced[: n_frames * hop].reshape(n_frames, hop)
    quiet = np.zeros(total, dtype=bool)  # wholly unvoiced: at least one fade away from any voicing
    pos = 0
    for kind, n in segments:
        if kind != "voiced":
            quiet[pos + fade : pos + n - fade] = True
        pos += n
    qframes = quiet[: n_frames * hop].reshape(n_frames, hop)
    label = np.full(n_frames, -1, dtype=np.int8)
    label[frames.all(1)] = 1
    label[qframes.all(1)] = 0
    centres = (np.arange(n_frames) * hop + hop // 2).astype(np.int64)
    return Utterance((0.5 * audio).astype(np.float32), f0_true[centres].astype(np.float32), label)


# ----------------------------------------------------------------------------- conditions


def _noise(rng: np.random.Generator, n: int, pink: bool) -> np.ndarray:
    w = rng.standard_normal(n)
    if not pink:
        return w
    spec = np.fft.rfft(w)
    f = np.fft.rfftfreq(n)
    spec[1:] /= np.sqrt(f[1:])
    spec[0] = 0
    return np.fft.irfft(spec, n)


def degrade(audio: np.ndarray, condition: str, rng: np.random.Generator, sr: int) -> np.ndarray:
    x = audio.astype(np.float64)
    if condition == "clean":
        return audio
    if condition.startswith(("white", "pink")):
        snr = float(condition.split()[-1].removesuffix("dB"))
        noise = _noise(rng, x.shape[0], condition.startswith("pink"))
        active = x[np.abs(x) > 0.01 * np.abs(x).max()]  # speech power over the active samples
        gain = np.sqrt(np.mean(active**2) / np.mean(noise**2) / 10 ** (snr / 10))
        y = x + gain * noise
    elif condition == "reverb":
        n = int(0.5 * sr)
        ir = rng.standard_normal(n) * np.exp(-6.9 * np.arange(n) / n)  # -60 dB at 0.5 s
        ir[0] = 1.0 / 0.3
        y = signal.fftconvolve(x, ir)[: x.shape[0]]
    else:
        raise ValueError(condition)
    return (0.5 * y / (np.abs(y).max() + 1e-9)).astype(np.float32)


CONDITIONS = ("clean", "white 20dB", "pink 10dB", "reverb")


# ----------------------------------------------------------------------------- scoring


@dataclass
class Score:
    voiced_ref: int = 0
    gross: int = 0
    scored: int = 0
    voicing_errors: int = 0
    fine_sq: float = 0.0
    fine_n: int = 0
    seconds: float = 0.0
    audio_s: float = 0.0

    def add(self, est: np.ndarray, ref_f0: np.ndarray, ref_voiced: np.ndarray, mask: np.ndarray) -> None:
        n = min(est.shape[0], ref_f0.shape[0])
        est, ref_f0, ref_voiced, mask = est[:n], ref_f0[:n], ref_voiced[:n], mask[:n]
        est_voiced = est > 0
        self.scored += int(mask.sum())
        self.voicing_errors += int((mask & (est_voiced != ref_voiced)).sum())
        both = mask & ref_voiced & est_voiced
        self.voiced_ref += int((mask & ref_voiced).sum())
        rel = np.abs(est[both] / ref_f0[both] - 1)
        self.gross += int((rel > GROSS).sum())
        cents = 1200 * np.log2(est[both][rel <= GROSS] / ref_f0[both][rel <= GROSS])
        self.fine_sq += float((cents**2).sum())
        self.fine_n += int(cents.size)

    def row(self) -> tuple[float, float, float, float, float]:
        gpe = self.gross / max(self.voiced_ref, 1)
        vde = self.voicing_errors / max(self.scored, 1)
        ffe = (self.voicing_errors + self.gross) / max(self.scored, 1)
        fine = float(np.sqrt(self.fine_sq / max(self.fine_n, 1)))
        return gpe, vde, ffe, fine, self.seconds / max(self.audio_s, 1e-9)


def _timed(track: Tracker, audio: np.ndarray, score: Score, sr: int) -> np.ndarray:
    t0 = time.process_time()
    f0 = track(audio)
    score.seconds += time.process_time() - t0
    score.audio_s += audio.shape[0] / sr
    return f0


def _table(title: str, scores: dict[tuple[str, str], Score], names: list[str]) -> list[str]:
    lines = [
        f"## {title}",
        "",
        "| condition | tracker | GPE | VDE | FFE | fine error (cents) | CPU s per audio s |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for cond in CONDITIONS:
        for name in names:
            gpe, vde, ffe, fine, speed = scores[cond, name].row()
            lines.append(
                f"| {cond} | {name} | {100 * gpe:.1f} % | {100 * vde:.1f} % | {100 * ffe:.1f} % | {fine:.0f} | {speed:.3f} |"
            )
    return [*lines, ""]


def bench_synthetic(n: int, seed: int, cfg: AudioConfig, tracks: dict[str, Tracker]) -> list[str]:
    rng = np.random.default_rng(seed)
    scores = {(c, name): Score() for c in CONDITIONS for name in tracks}
    for i in range(n):
        utt = synthetic_utterance(rng, cfg, low=i % 2 == 0)
        for cond in CONDITIONS:
            audio = degrade(utt.audio, cond, np.random.default_rng(seed * 1000 + i), cfg.sample_rate)
            for name, track in tracks.items():
                est = _timed(track, audio, scores[cond, name], cfg.sample_rate)
                scores[cond, name].add(est, utt.f0, utt.label == 1, utt.label >= 0)
    title = (
        f"Known F0: {n} synthetic utterances (half low voices with a creaky stretch, half high), ~3 s each"
    )
    return _table(title, scores, list(tracks))


def first_clips_per_speaker(corpus, split: str, n: int) -> list[str]:
    """The first ``n`` clip ids of ``split`` for each speaker, grouped by speaker (metadata order within)."""
    by_speaker: dict[int, list[str]] = {}
    for clip_id in corpus.ids(split):
        by_speaker.setdefault(corpus.speaker_id(clip_id), []).append(clip_id)
    return [c for group in by_speaker.values() for c in group[:n]]


def bench_corpus(data: str, clips: int, seed: int, cfg: AudioConfig, tracks: dict[str, Tracker]) -> list[str]:
    from model.data.corpus import Corpus
    from model.data.features import load_clip_audio

    chosen = first_clips_per_speaker(Corpus(data), "val", clips)
    scores = {(c, name): Score() for c in CONDITIONS for name in tracks}
    agree_v = agree_all = agree_pitch = both_voiced = 0
    for i, clip_id in enumerate(chosen):
        clean = load_clip_audio(data, clip_id, cfg)
        # every tracker on the clean recording once: Praat's and Harvest's tracks are the consensus
        on_clean = {
            name: _timed(track, clean, scores["clean", name], cfg.sample_rate)
            for name, track in tracks.items()
        }
        n = min(on_clean["praat"].shape[0], on_clean["harvest"].shape[0])
        ref_a, ref_b = on_clean["praat"][:n], on_clean["harvest"][:n]
        va, vb = ref_a > 0, ref_b > 0
        ratio = np.divide(ref_a, ref_b, out=np.ones_like(ref_a), where=va & vb)  # (F,) 1 unless both voiced
        close = va & vb & (np.abs(1200 * np.log2(ratio)) <= AGREE_CENTS)
        mask = (~va & ~vb) | close  # the consensus frames
        ref_f0 = np.where(close, np.sqrt(ref_a * ref_b), 0.0)
        agree_all += n
        agree_v += int((va == vb).sum())
        both_voiced += int((va & vb).sum())
        agree_pitch += int(close.sum())
        for cond in CONDITIONS:
            if cond == "clean":
                tracked = on_clean
            else:
                audio = degrade(clean, cond, np.random.default_rng(seed * 1000 + i), cfg.sample_rate)
                tracked = {
                    name: _timed(track, audio, scores[cond, name], cfg.sample_rate)
                    for name, track in tracks.items()
                }
            for name in tracks:
                scores[cond, name].add(tracked[name], ref_f0, close, mask)
    title = (
        f"Corpus `{data}`: {len(chosen)} validation clips ({clips} per speaker) against the Praat/Harvest "
        "consensus of the clean recording"
    )
    lines = _table(title, scores, list(tracks))
    lines.insert(
        2,
        f"Praat and Harvest on the clean clips: voicing agrees on {100 * agree_v / max(agree_all, 1):.1f} % of frames; "
        f"{100 * agree_pitch / max(both_voiced, 1):.1f} % of the frames both call voiced are within {AGREE_CENTS:.0f} "
        f"cents; the consensus keeps {100 * scores['clean', 'praat'].scored / max(agree_all, 1):.1f} % of frames.\n",
    )
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="data/flite", help="LJSpeech-format corpus (its val split); '' skips it")
    p.add_argument("--clips", type=int, default=10, help="validation clips per speaker")
    p.add_argument("--synthetic", type=int, default=24, help="known-F0 utterances")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cfg, pitch = AudioConfig(), PitchConfig()
    tracks = trackers(cfg, pitch)
    warm = np.sin(2 * np.pi * 150 * np.arange(cfg.sample_rate) / cfg.sample_rate).astype(np.float32)
    for track in tracks.values():  # imports and first-call set-up stay out of the timings
        track(warm)
    lines = [
        f"pitch_trackers: floor {pitch.floor:g} Hz, ceiling {pitch.ceiling:g} Hz, one value per {cfg.hop_length} "
        f"samples at {cfg.sample_rate} Hz; trackers: {', '.join(tracks)}",
        "",
    ]
    if args.synthetic > 0:
        lines += bench_synthetic(args.synthetic, args.seed, cfg, tracks)
    if args.data:
        if "harvest" not in tracks:
            lines.append("(corpus comparison skipped: it needs Harvest for the consensus)")
        else:
            lines += bench_corpus(args.data, args.clips, args.seed, cfg, tracks)
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
