"""The numbers ``parawave eval`` measures, each on known inputs: ASR transcripts and WER
(pocketsphinx, jiwer), PESQ wide band, STOI, mel-cepstral distortion and duration errors.

Mel-cepstral distortion, as computed here: cepstra are the orthonormal DCT-II over the mel axis of
our log-mel (natural log of each band's RMS magnitude), coefficients c1..c13 (c0, the level, is
dropped); per frame ``MCD = 10 / ln 10 * sqrt(2 * sum_d (c_d - c'_d)^2)`` dB, averaged over the
frames where the recording is within 40 dB of its loudest frame (silence left out: a floor of
digital silence against a vocoder's faint hiss would dominate otherwise). Values are comparable
between runs of this tool, not with numbers from SPTK mel-cepstra.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Sequence
from functools import lru_cache

import numpy as np

log = logging.getLogger(__name__)

ASR_RATE = 16_000  # pocketsphinx's en-us model, PESQ wide band
MCD_COEFFS = 13  # c1..c13
MCD_SILENCE_DB = 40.0  # frames this far below the loudest reference frame are left out of MCD
DURATION_TOLERANCE = 0.15


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
