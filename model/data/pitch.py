"""F0 and voicing per mel frame (Praat's autocorrelation pitch tracker through parselmouth), cached.

Frame contract: frame f of the log-mel covers samples ``[f*hop, (f+1)*hop)`` and sits at its
centre, time ``(f + 0.5) * hop / sr``; the tracker runs with a time step of one hop and its
analysis frame nearest each centre is taken (Praat's first frame is centred later than ours
because it needs a window of ``3 / pitch_floor`` seconds; frames it cannot analyse are unvoiced).

    f0 (F,) float32 Hz, 0 where unvoiced

Why Praat: the corpus is flite's statistical parametric speech, whose F0 is clean; Praat's
autocorrelation method (Boersma 1993) with its path finder tracks it without octave jumps and is
the standard for natural speech too (the same package measures the harmonics-to-noise ratio the
evaluation reports). Measured on the default corpus with :func:`corpus_pitch_stats`.

Cache: ``<corpus>/cache/f0-<hash>/<id>.npy`` beside the mels (the hash covers the audio config,
the tracker settings and :data:`PITCH_VERSION`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from model.data.config import AudioConfig
from model.data.features import atomic_write, load_clip_audio, map_clips, read_cached_array

__all__ = [
    "PITCH_VERSION",
    "PitchConfig",
    "cached_f0",
    "compute_corpus_f0",
    "f0_cache_path",
    "track_f0",
]

log = logging.getLogger(__name__)

PITCH_VERSION = 1


@dataclass(frozen=True)
class PitchConfig:
    floor: float = 60.0  # Hz: lowest pitch searched (men's creak ~ 60 Hz); sets the window (3 / floor s)
    ceiling: float = 500.0  # Hz
    voicing_threshold: float = 0.45  # Praat's defaults
    silence_threshold: float = 0.03

    def to_dict(self) -> dict:
        return asdict(self)


def track_f0(audio: np.ndarray, cfg: AudioConfig, pitch: PitchConfig = PitchConfig()) -> np.ndarray:
    """(T,) float audio at ``cfg.sample_rate`` -> (T // hop,) float32 F0 in Hz per mel frame, 0 = unvoiced."""
    import parselmouth

    audio = np.asarray(audio, dtype=np.float64).reshape(-1)
    hop, sr = cfg.hop_length, cfg.sample_rate
    n_frames = audio.shape[0] // hop
    f0 = np.zeros(n_frames, dtype=np.float32)
    if n_frames == 0 or audio.shape[0] < int(3.0 / pitch.floor * sr) + 1:
        return f0  # too short to analyse at this floor: unvoiced
    snd = parselmouth.Sound(audio, sampling_frequency=sr)
    track = snd.to_pitch_ac(
        time_step=hop / sr,
        pitch_floor=pitch.floor,
        pitch_ceiling=pitch.ceiling,
        voicing_threshold=pitch.voicing_threshold,
        silence_threshold=pitch.silence_threshold,
    )
    values = np.asarray(track.selected_array["frequency"], dtype=np.float32)  # (N,) 0 = unvoiced
    if values.size == 0:
        return f0
    centres = (np.arange(n_frames) + 0.5) * hop / sr  # (F,) seconds
    idx = np.rint((centres - track.x1) / track.dx).astype(np.int64)  # (F,) nearest analysis frame
    inside = (idx >= 0) & (idx < values.size)
    f0[inside] = values[idx[inside]]
    return f0


# ----------------------------------------------------------------------------- cache


def _hash(cfg: AudioConfig, pitch: PitchConfig) -> str:
    blob = json.dumps(
        {"pitch_version": PITCH_VERSION, "audio": cfg.to_dict(), **pitch.to_dict()}, sort_keys=True
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


def f0_cache_dir(corpus_dir: str | os.PathLike, cfg: AudioConfig, pitch: PitchConfig = PitchConfig()) -> Path:
    return Path(corpus_dir) / "cache" / f"f0-{_hash(cfg, pitch)}"


def f0_cache_path(
    corpus_dir: str | os.PathLike, clip_id: str, cfg: AudioConfig, pitch: PitchConfig = PitchConfig()
) -> Path:
    return f0_cache_dir(corpus_dir, cfg, pitch) / f"{clip_id}.npy"


def _read(path: Path) -> np.ndarray | None:
    return read_cached_array(path, "F0", lambda f0: f0.ndim == 1)


def cached_f0(
    corpus_dir: str | os.PathLike,
    clip_id: str,
    audio_loader: Callable[[str], np.ndarray] | None,
    cfg: AudioConfig,
    expected_frames: int | None = None,
    pitch: PitchConfig = PitchConfig(),
) -> np.ndarray:
    """(F,) F0 of a clip from the cache, or tracked and cached (``audio_loader(id)`` on a miss; None
    reads the wav). ``expected_frames`` rejects a cached entry of another length."""
    path = f0_cache_path(corpus_dir, clip_id, cfg, pitch)
    f0 = _read(path)
    if f0 is not None and (expected_frames is None or f0.shape[0] == expected_frames):
        return f0
    audio = audio_loader(clip_id) if audio_loader is not None else load_clip_audio(corpus_dir, clip_id, cfg)
    f0 = track_f0(audio, cfg, pitch)
    d = path.parent
    if not (d / "config.json").exists():
        blob = json.dumps(
            {"pitch_version": PITCH_VERSION, "audio": cfg.to_dict(), **pitch.to_dict()}, indent=2
        ).encode()
        atomic_write(d / "config.json", lambda f: f.write(blob))
    atomic_write(path, lambda f: np.save(f, f0, allow_pickle=False))
    return f0


def _one(args: tuple[str, str, dict]) -> tuple[str, int, int, str | None]:
    """Worker: -> (id, frames, voiced frames, error or None)."""
    corpus_dir, clip_id, cfg_dict = args
    try:
        f0 = cached_f0(corpus_dir, clip_id, None, AudioConfig.from_dict(cfg_dict))
    except Exception as exc:  # reported per clip; one bad wav must not stop the run
        return clip_id, 0, 0, f"{type(exc).__name__}: {exc}"
    return clip_id, int(f0.shape[0]), int((f0 > 0).sum()), None


def compute_corpus_f0(
    corpus_dir: str | os.PathLike,
    cfg: AudioConfig,
    jobs: int | None = None,
    ids: list[str] | None = None,
    progress: bool = True,
) -> dict:
    """Track (or read from the cache) every clip's F0. Returns {"clips", "frames", "voiced",
    "unvoiced_clips": [ids with no voiced frame], "failed": {id: message}, "seconds"}."""
    from model.data.corpus import read_metadata

    corpus_dir = Path(corpus_dir)
    if ids is None:
        ids = [row.id for row in read_metadata(corpus_dir)]
    jobs = max(1, jobs or os.cpu_count() or 1)
    work = [(str(corpus_dir), i, cfg.to_dict()) for i in ids]
    stats: dict = {"clips": 0, "frames": 0, "voiced": 0, "unvoiced_clips": [], "failed": {}, "seconds": 0.0}
    t0 = time.perf_counter()
    for clip_id, frames, voiced, err in map_clips(_one, work, jobs, "f0", progress):
        if err is not None:
            stats["failed"][clip_id] = err
            log.warning("F0 of %s failed: %s", clip_id, err)
            continue
        stats["clips"] += 1
        stats["frames"] += frames
        stats["voiced"] += voiced
        if frames and not voiced:
            stats["unvoiced_clips"].append(clip_id)
    stats["seconds"] = time.perf_counter() - t0
    return stats
