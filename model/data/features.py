"""Log-mel features: the numpy reference every other implementation is tested against.

numpy/scipy only (no torch, no librosa), so it runs on the GPU host and in the torch-free tools.

Framing contract (the vocoders rely on it)::

    audio (T,) --trim--> (F * hop,)  with F = T // hop
    frame f is centred at sample  f * hop + hop / 2,  i.e. it describes samples [f*hop, (f+1)*hop)
    log_mel(audio) -> (n_mels, F)

so mel frames ``[a, b)`` condition exactly audio samples ``[a*hop, b*hop)``. To get there the trimmed
audio is reflect-padded by ``(n_fft - hop) / 2`` on each side (the extra sample of an odd difference
goes right) and cut into F windows of ``n_fft`` samples every ``hop`` samples.

Spectrum: a periodic Hann window of ``win_length`` samples, centred and zero-padded to ``n_fft``
(the same window ``torch.stft(..., window=hann_window(win_length), center=...)`` builds), rFFT,
power ``|X|^2``. Mel: Slaney mel scale (linear below 1 kHz, logarithmic above) with triangular,
area-normalised ("slaney") filters. Value: ``log(max(log_floor, sqrt(mel_power)))`` -- the log of
the band's RMS magnitude, floored (see :class:`~model.data.config.AudioConfig`).

A torch twin (training losses) matches this when it reflect-pads by :func:`frame_padding` and calls
``torch.stft(center=False, window=torch.hann_window(win_length))`` then applies
:func:`mel_filterbank`; ``tests/data/test_features.py`` pins that recipe. (Note: torch's reflect pad
needs pad < length, i.e. clips of at least ~3 frames; numpy here keeps reflecting.)

Caching: one ``.npy`` per clip under ``<corpus>/cache/mel-<config hash>/<id>.npy``, written
atomically, so any number of processes may fill the cache at once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import numpy as np
import scipy.fft
import scipy.signal
import scipy.sparse

from model.data.config import AudioConfig

log = logging.getLogger(__name__)

# Bump when the feature computation changes in a way AudioConfig does not capture: old caches
# then live under a different hash and are simply not used.
FEATURE_VERSION = 1

# ----------------------------------------------------------------------------- mel scale / bank

_F_SP = 200.0 / 3  # Hz per mel in the linear part
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP  # 15 mel
_LOG_STEP = np.log(6.4) / 27.0  # log-Hz per mel above 1 kHz


def hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    """Slaney (Auditory Toolbox) mel scale: linear below 1 kHz, logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz / _F_SP
    logpart = _MIN_LOG_MEL + np.log(np.maximum(hz, _MIN_LOG_HZ) / _MIN_LOG_HZ) / _LOG_STEP
    return np.where(hz >= _MIN_LOG_HZ, logpart, linear)


def mel_to_hz(mel: np.ndarray | float) -> np.ndarray:
    """Inverse of :func:`hz_to_mel`."""
    mel = np.asarray(mel, dtype=np.float64)
    linear = mel * _F_SP
    logpart = _MIN_LOG_HZ * np.exp(_LOG_STEP * (np.maximum(mel, _MIN_LOG_MEL) - _MIN_LOG_MEL))
    return np.where(mel >= _MIN_LOG_MEL, logpart, linear)


def _band_edges(n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    return mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))


def mel_band_edges(cfg: AudioConfig) -> np.ndarray:
    """(n_mels + 2,) Hz: filter m rises from edge m, peaks at edge m+1 and falls to edge m+2."""
    return _band_edges(cfg.n_mels, cfg.fmin, cfg.fmax)


def mel_center_frequencies(cfg: AudioConfig) -> np.ndarray:
    """(n_mels,) Hz: the peak of each filter."""
    return mel_band_edges(cfg)[1:-1]


def _mel_filterbank(
    sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float
) -> np.ndarray:  # (n_mels, n_fft//2 + 1) float64
    edges = _band_edges(n_mels, fmin, fmax)  # (n_mels + 2,)
    bins = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)  # (K,) Hz of each rFFT bin
    lower, center, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]  # (n_mels, 1)
    rising = (bins[None, :] - lower) / (center - lower)  # (n_mels, K)
    falling = (upper - bins[None, :]) / (upper - center)  # (n_mels, K)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    # Slaney area normalisation: every triangle gets area 1 in Hz (height 2 / bandwidth), so the
    # bank keeps roughly constant energy per Hz across the widening high bands.
    weights *= 2.0 / (upper - lower)
    empty = np.flatnonzero(weights.max(axis=1) == 0)
    if empty.size:
        log.warning("mel filters %s fall between FFT bins (n_mels too high for n_fft?)", empty.tolist())
    return weights


@lru_cache(maxsize=16)
def _cached_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    fb = _mel_filterbank(sample_rate, n_fft, n_mels, fmin, fmax).astype(np.float32)
    fb.setflags(write=False)
    return fb


def mel_filterbank(cfg: AudioConfig) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) float32 Slaney filterbank, applied to a power spectrum. Read-only."""
    return _cached_filterbank(cfg.sample_rate, cfg.n_fft, cfg.n_mels, float(cfg.fmin), float(cfg.fmax))


@lru_cache(maxsize=16)
def _cached_sparse_filterbank(
    sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float
) -> scipy.sparse.csr_array:
    # Every FFT bin feeds at most two filters, so the bank is ~98 % zeros: a sparse product is ~20x
    # fewer operations than the dense one and, unlike BLAS, never spawns threads that fight
    # the worker processes of compute_corpus_mels for the cores.
    return scipy.sparse.csr_array(_cached_filterbank(sample_rate, n_fft, n_mels, fmin, fmax))


@lru_cache(maxsize=16)
def _cached_window(win_length: int) -> np.ndarray:
    w = scipy.signal.get_window("hann", win_length, fftbins=True).astype(np.float32)  # periodic
    w.setflags(write=False)
    return w


def stft_window(cfg: AudioConfig) -> np.ndarray:
    """(n_fft,) float32: periodic Hann of win_length, centred in n_fft zeros (torch.stft's layout)."""
    w = np.zeros(cfg.n_fft, dtype=np.float32)
    left = (cfg.n_fft - cfg.win_length) // 2
    w[left : left + cfg.win_length] = _cached_window(cfg.win_length)
    return w


# ----------------------------------------------------------------------------- STFT / log-mel


def num_frames(num_samples: int, cfg: AudioConfig) -> int:
    """Mel frames for ``num_samples`` of audio: ``num_samples // hop_length``."""
    return num_samples // cfg.hop_length


def frame_padding(cfg: AudioConfig) -> tuple[int, int]:
    """(left, right) reflect padding that centres frame f at sample ``f * hop + hop / 2``."""
    total = cfg.n_fft - cfg.hop_length
    if total < 0:
        raise ValueError(f"n_fft {cfg.n_fft} < hop_length {cfg.hop_length}")
    return total // 2, total - total // 2


def _pad_reflect(x: np.ndarray, left: int, right: int) -> np.ndarray:
    # np.pad's "reflect" keeps reflecting when the pad exceeds the signal (a one-frame clip);
    # a 1-sample signal has nothing to reflect, so fall back to repeating it.
    if x.shape[0] < 2:
        return np.pad(x, (left, right), mode="edge")
    return np.pad(x, (left, right), mode="reflect")


def power_spectrogram(audio: np.ndarray, cfg: AudioConfig) -> np.ndarray:
    """(F, n_fft // 2 + 1) float32 power spectrum ``|STFT|^2`` with the framing contract above."""
    audio = np.asarray(audio)
    if audio.ndim != 1:
        raise ValueError(f"expected mono audio of shape (T,), got {audio.shape}")
    hop = cfg.hop_length
    n_frames = num_frames(audio.shape[0], cfg)
    n_bins = cfg.n_fft // 2 + 1
    if n_frames == 0:
        return np.zeros((0, n_bins), dtype=np.float32)
    x = audio[: n_frames * hop].astype(np.float32, copy=False)  # (F*hop,)
    left, right = frame_padding(cfg)
    padded = _pad_reflect(x, left, right)  # (F*hop + n_fft - hop,)
    # The window is zero outside its central win_length samples, so only those are framed. The
    # rFFT of that slice zero-padded at the end to n_fft is the rFFT of the centred n_fft frame up
    # to a circular shift, i.e. a phase factor: the power spectrum is identical and cheaper.
    w_off = (cfg.n_fft - cfg.win_length) // 2
    frames = np.lib.stride_tricks.sliding_window_view(padded[w_off:], cfg.win_length)[::hop][:n_frames]
    buf = np.zeros((n_frames, cfg.n_fft), dtype=np.float32)  # (F, n_fft); pre-padded: 4x faster than n=
    np.multiply(frames, _cached_window(cfg.win_length), out=buf[:, : cfg.win_length])
    spec = scipy.fft.rfft(buf, axis=-1, overwrite_x=True)  # (F, n_bins) complex64
    return (spec.real * spec.real + spec.imag * spec.imag).astype(np.float32, copy=False)


def log_mel_from_power(power: np.ndarray, cfg: AudioConfig) -> np.ndarray:
    """(F, n_bins) power spectrum -> (n_mels, F) float32 log-mel."""
    fb = _cached_sparse_filterbank(cfg.sample_rate, cfg.n_fft, cfg.n_mels, float(cfg.fmin), float(cfg.fmax))
    mel_power = np.asarray(fb @ power.T)  # (n_mels, F)
    return np.log(np.maximum(np.sqrt(mel_power), cfg.log_floor)).astype(np.float32, copy=False)


def log_mel(audio: np.ndarray, cfg: AudioConfig) -> np.ndarray:
    """(T,) float audio at ``cfg.sample_rate`` -> (n_mels, T // hop_length) float32 log-mel."""
    return log_mel_from_power(power_spectrogram(audio, cfg), cfg)


def silence_value(cfg: AudioConfig) -> float:
    """The log-mel value of digital silence, ``log(log_floor)``: what padded frames should hold."""
    return float(np.log(cfg.log_floor))


# ----------------------------------------------------------------------------- audio of a clip


def resample(audio: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Polyphase resampling (scipy); identity when the rates match."""
    if sr_in == sr_out:
        return audio
    g = np.gcd(sr_in, sr_out)
    out = scipy.signal.resample_poly(audio.astype(np.float64), sr_out // g, sr_in // g)
    return out.astype(np.float32)


def wav_path(corpus_dir: str | os.PathLike, clip_id: str) -> Path:
    return Path(corpus_dir) / "wavs" / f"{clip_id}.wav"


def load_clip_audio(corpus_dir: str | os.PathLike, clip_id: str, cfg: AudioConfig) -> np.ndarray:
    """(T,) float32 mono audio of a clip at ``cfg.sample_rate`` (resampled when the wav differs)."""
    from model.data.audio import load_wav  # soundfile when present, else scipy

    audio, sr = load_wav(wav_path(corpus_dir, clip_id))
    audio = np.asarray(audio, dtype=np.float32)
    if sr != cfg.sample_rate:
        audio = resample(audio, sr, cfg.sample_rate)
    return audio


# ----------------------------------------------------------------------------- cache


def config_hash(cfg: AudioConfig) -> str:
    """Short stable hash of everything that changes the features (config + FEATURE_VERSION)."""
    blob = json.dumps({"feature_version": FEATURE_VERSION, **cfg.to_dict()}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


def cache_dir(corpus_dir: str | os.PathLike, cfg: AudioConfig) -> Path:
    return Path(corpus_dir) / "cache" / f"mel-{config_hash(cfg)}"


def mel_cache_path(corpus_dir: str | os.PathLike, clip_id: str, cfg: AudioConfig) -> Path:
    return cache_dir(corpus_dir, cfg) / f"{clip_id}.npy"


def atomic_write(path: Path, write: Callable) -> None:
    """Call ``write(binary file)`` on a temp file next to ``path``, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _ensure_cache_dir(corpus_dir: str | os.PathLike, cfg: AudioConfig) -> Path:
    d = cache_dir(corpus_dir, cfg)
    info = d / "config.json"
    if not info.exists():  # a human-readable record of what the hash stands for
        blob = json.dumps({"feature_version": FEATURE_VERSION, **cfg.to_dict()}, indent=2).encode()
        atomic_write(info, lambda f: f.write(blob))
    return d


def read_cached_array(path: Path, what: str, fits: Callable[[np.ndarray], bool]) -> np.ndarray | None:
    """A cached float32 ``.npy`` (a clip's mel, F0, ...), or None when it is missing, unreadable or
    does not ``fit`` (then the caller recomputes it; a warning says why)."""
    try:
        arr = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        return None
    except (ValueError, OSError, EOFError) as exc:  # truncated or foreign file: recompute it
        log.warning("ignoring unreadable cached %s %s (%s)", what, path, exc)
        return None
    if arr.dtype != np.float32 or not fits(arr):
        log.warning("ignoring cached %s %s with shape %s dtype %s", what, path, arr.shape, arr.dtype)
        return None
    return arr


def _read_cached(path: Path, cfg: AudioConfig) -> np.ndarray | None:
    return read_cached_array(path, "mel", lambda m: m.ndim == 2 and m.shape[0] == cfg.n_mels)


def cached_log_mel(
    corpus_dir: str | os.PathLike,
    clip_id: str,
    audio_loader: Callable[[str], np.ndarray] | None,
    cfg: AudioConfig,
    expected_frames: int | None = None,
) -> np.ndarray:
    """(n_mels, F) log-mel of a clip, from the cache or computed and cached.

    ``audio_loader(clip_id)`` must return the clip's (T,) audio at ``cfg.sample_rate``; it is only
    called on a cache miss (None: read ``<corpus>/wavs/<id>.wav``). ``expected_frames``, when given,
    rejects a cached entry of another length (the wav changed) and recomputes it.
    """
    path = mel_cache_path(corpus_dir, clip_id, cfg)
    mel = _read_cached(path, cfg)
    if mel is not None and (expected_frames is None or mel.shape[1] == expected_frames):
        return mel
    audio = audio_loader(clip_id) if audio_loader is not None else load_clip_audio(corpus_dir, clip_id, cfg)
    mel = log_mel(audio, cfg)
    _ensure_cache_dir(corpus_dir, cfg)
    atomic_write(path, lambda f: np.save(f, mel, allow_pickle=False))
    return mel


def _compute_one(args: tuple[str, str, dict]) -> tuple[str, int, str | None]:
    """Worker: (corpus, id, cfg dict) -> (id, frames, error message or None)."""
    corpus_dir, clip_id, cfg_dict = args
    cfg = AudioConfig.from_dict(cfg_dict)
    try:
        mel = cached_log_mel(corpus_dir, clip_id, None, cfg)
    except Exception as exc:  # reported per clip by the caller; one bad wav must not stop the run
        return clip_id, 0, f"{type(exc).__name__}: {exc}"
    return clip_id, int(mel.shape[1]), None


def map_clips(worker: Callable, work: list, jobs: int, desc: str, progress: bool = True):
    """``worker(item)`` for every item, in ``jobs`` processes (in this one for 1 job or 1 item), in
    order, with a tqdm bar; yields the results. The pool is shut down when the caller stops."""
    from tqdm import tqdm

    bar = tqdm(total=len(work), desc=desc, unit="clip", disable=not progress or not work)
    pool = None
    if jobs == 1 or len(work) < 2:
        results = map(worker, work)
    else:
        from concurrent.futures import ProcessPoolExecutor

        pool = ProcessPoolExecutor(max_workers=min(jobs, len(work)))
        results = pool.map(worker, work, chunksize=max(1, min(32, len(work) // (4 * jobs))))
    try:
        for r in results:
            bar.update(1)
            yield r
    finally:
        bar.close()
        if pool is not None:
            pool.shutdown(cancel_futures=True)


def compute_corpus_mels(
    corpus_dir: str | os.PathLike,
    cfg: AudioConfig,
    jobs: int | None = None,
    ids: list[str] | None = None,
    progress: bool = True,
) -> dict:
    """Fill the mel cache for every clip of a corpus (or ``ids``), in parallel; skip cached clips.

    Returns {"computed", "cached", "failed": {id: message}, "seconds", "frames"}.
    """
    from model.data.corpus import read_metadata

    corpus_dir = Path(corpus_dir)
    if ids is None:
        ids = [row.id for row in read_metadata(corpus_dir)]
    _ensure_cache_dir(corpus_dir, cfg)
    d = cache_dir(corpus_dir, cfg)
    todo = [i for i in ids if not (d / f"{i}.npy").exists()]
    stats = {"computed": 0, "cached": len(ids) - len(todo), "failed": {}, "seconds": 0.0, "frames": 0}
    jobs = max(1, jobs or os.cpu_count() or 1)
    t0 = time.perf_counter()
    work = [(str(corpus_dir), i, cfg.to_dict()) for i in todo]
    for clip_id, frames, err in map_clips(_compute_one, work, jobs, "mels", progress):
        if err is None:
            stats["computed"] += 1
            stats["frames"] += frames
        else:
            stats["failed"][clip_id] = err
            log.warning("mel of %s failed: %s", clip_id, err)
    stats["seconds"] = time.perf_counter() - t0
    return stats
