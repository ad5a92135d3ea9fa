"""Copy synthesis: a recording's ground-truth log-mel (and its Praat F0, for the vocoders'
excitation) through a voice bundle's student or teacher, and how the output matches the recording."""

from __future__ import annotations

import numpy as np

from evaluation.metrics import pesq_wb, stoi_of


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
    (:func:`evaluation.voicing.f0_error`: f0_rmse_cents, f0_bias_cents, voicing_error)."""
    from evaluation.voicing import f0_error, hnr_db
    from model.data.pitch import track_f0

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
