"""Exported graphs vs PyTorch: the same inputs through both, max absolute error, checked against a bound.

Each ``*_parity`` function takes the PyTorch model and the exported ONNX model (ModelProto or path),
runs both on random inputs at several lengths (and batch 2 with unequal lengths where the graph
batches) and returns a :class:`Parity` (the worst absolute error, per-case details). ``check``
raises :class:`ParityError` when it is over the bound. ``parawave export`` runs them on every graph
it writes and records the errors in the bundle's provenance.

The teacher is checked the way it generates: the step graph run sample by sample, and the block
graph run a few frames per call, must reproduce ``TeacherWaveNet.generate`` with the same fixed
noise sequence and the same (non-zero) excitation (ancestral sampling, every sample fed back), not
just one isolated step.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from export.onnx import example_speakers
from service import graphs
from service.sessions import session_options

log = logging.getLogger(__name__)

# Bounds on max |onnx - torch|. fp32 graphs differ by float reassociation only; the teacher's
# error can grow through the feedback loop over a few thousand samples, still far below 1 LSB of
# 16-bit audio (3e-5) for the bound to mean something.
BOUNDS = {"fp32": 1e-4, "teacher": 1e-4, "fp16": 5e-2}


class ParityError(AssertionError):
    pass


@dataclass
class Parity:
    graph: str
    max_abs: float = 0.0
    cases: list[tuple[str, float]] = field(default_factory=list)
    bound: float = BOUNDS["fp32"]

    def add(self, case: str, ref: np.ndarray, got: np.ndarray) -> None:
        if ref.shape != got.shape:
            raise ParityError(f"{self.graph} [{case}]: shape {got.shape} != PyTorch {ref.shape}")
        err = float(np.max(np.abs(ref.astype(np.float64) - got.astype(np.float64)))) if ref.size else 0.0
        self.cases.append((case, err))
        self.max_abs = max(self.max_abs, err)

    def check(self) -> Parity:
        if not self.max_abs <= self.bound:
            raise ParityError(
                f"{self.graph}: max abs error {self.max_abs:.3g} > {self.bound:g} ({self.cases})"
            )
        return self

    def __str__(self) -> str:
        cases = ", ".join(f"{c}: {e:.2g}" for c, e in self.cases)
        return f"{self.graph:<14} max abs error {self.max_abs:.3g} (bound {self.bound:g}; {cases})"


def session(model: onnx.ModelProto | str | Path, batch_one: bool = False) -> ort.InferenceSession:
    """A CPU session on an exported model (single-threaded: parity, not speed)."""
    so = session_options(1, batch_one=batch_one)
    src = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    return ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


# -- acoustic ------------------------------------------------------------------------------------------


def acoustic_parity(model: nn.Module, onnx_model, lengths=(3, 11, 29), seed: int = 0) -> Parity:
    """Text of several lengths, alone and as a padded batch of 2 (unequal lengths, speeds, speakers)."""
    sess = session(onnx_model)
    cfg = model.cfg
    p = Parity("acoustic")
    g = torch.Generator().manual_seed(seed)
    cases = [[n] for n in lengths] + [[lengths[-1], lengths[0]]]
    for rows in cases:
        B, L = len(rows), max(rows)
        phonemes = torch.zeros(B, L, dtype=torch.long)
        for b, n in enumerate(rows):
            phonemes[b, :n] = torch.randint(1, cfg.n_symbols, (n,), generator=g)
        lens = torch.tensor(rows)
        speaker = example_speakers(B, cfg.n_speakers)  # (B, S): one-hot, the 2nd row of 2 a blend
        speed = torch.tensor([1.0, 1.3][:B])
        pitch = torch.tensor([0.0, -3.5][:B])
        with torch.no_grad():
            mel, dur, frames, f0 = model.eval().generate(phonemes, lens, speaker, speed[:, None], pitch)
        got = sess.run(
            None,
            {
                "phonemes": _np(phonemes),
                "lengths": _np(lens),
                graphs.SPEAKER_WEIGHTS: _np(speaker),
                "speed": _np(speed),
                "pitch": _np(pitch),
            },
        )
        case = f"L={rows}"
        if not (np.array_equal(got[1], _np(dur)) and np.array_equal(got[2], _np(frames))):
            raise ParityError(f"acoustic [{case}]: durations differ from PyTorch ({got[1]} vs {_np(dur)})")
        if not np.array_equal(got[3] > 0, _np(f0) > 0):
            raise ParityError(f"acoustic [{case}]: voicing differs from PyTorch")
        p.add(case, _np(mel), got[0])
        # F0 in Hz, compared relative to its scale (an absolute bound on ~100 Hz would mean nothing)
        p.add(case + " f0/100Hz", _np(f0) / 100.0, got[3] / 100.0)
    return p.check()


# -- student -------------------------------------------------------------------------------------------


def student_parity(
    model: nn.Module, onnx_model, frames=(1, 7, 40), seed: int = 0, precision: str = "fp32"
) -> Parity:
    sess = session(onnx_model)
    cfg = model.cfg
    p = Parity("student" if precision == "fp32" else f"student_{precision}", bound=BOUNDS[precision])
    g = torch.Generator().manual_seed(seed)
    cases = [(1, n) for n in frames] + [(2, frames[-1])]
    from export.onnx import example_excitation

    for B, F in cases:
        mel = torch.randn(B, cfg.n_mels, F, generator=g) * 2.0 - 5.0
        z = torch.randn(B, F * cfg.hop_length, generator=g)
        speaker = example_speakers(B, cfg.n_speakers)  # (B, S)
        exc = example_excitation(B, F, cfg.hop_length, cfg.sample_rate, seed=seed + F)
        with torch.no_grad():
            ref = model.eval()(z, mel, speaker, excitation=exc)
        feeds = {"z": _np(z), "mel": _np(mel), graphs.SPEAKER_WEIGHTS: _np(speaker), "excitation": _np(exc)}
        got = sess.run(None, feeds)[0]
        p.add(f"B={B},F={F}", _np(ref), got)
    return p.check()


# -- teacher -------------------------------------------------------------------------------------------


def teacher_cond_parity(model: nn.Module, onnx_model, frames=(1, 6, 33), seed: int = 0) -> Parity:
    sess = session(onnx_model)
    cfg = model.cfg
    p = Parity("teacher_cond")
    g = torch.Generator().manual_seed(seed)
    for B, F in [(1, n) for n in frames] + [(2, frames[-1])]:
        mel = torch.randn(B, cfg.n_mels, F, generator=g) * 2.0 - 5.0
        speaker = example_speakers(B, cfg.n_speakers)  # (B, S)
        with torch.no_grad():
            ref = model.eval().frame_conditioning(mel, speaker)
            lpc = model.frame_lpc(mel)  # (B, p, F) or None
        got = sess.run(None, {"mel": _np(mel), graphs.SPEAKER_WEIGHTS: _np(speaker)})
        if (lpc is None) != (len(got) == 1):
            raise ParityError(
                f"teacher_cond: {len(got)} outputs for a teacher with lpc_order {cfg.lpc_order}"
            )
        p.add(f"B={B},F={F}", _np(ref), got[0])
        if lpc is not None:
            p.add(f"B={B},F={F} lpc", _np(lpc), got[1])
    return p.check()


def _teacher_reference(model, frames: int, batch: int, seed: int):
    """mel, speaker, noise, excitation (B, 3, T) of a random F0 contour, PyTorch's cached generation
    on them (audio (B, T)), the frame-rate conditioning (B, C, F) and LPC (B, p, F) (None without LP)."""
    from export.onnx import example_excitation

    cfg = model.cfg
    g = torch.Generator().manual_seed(seed)
    mel = torch.randn(batch, cfg.n_mels, frames, generator=g) * 2.0 - 5.0
    speaker = torch.arange(batch) % cfg.n_speakers
    noise = torch.randn(batch, frames * cfg.hop_length, generator=g)
    exc = example_excitation(batch, frames, cfg.hop_length, cfg.sample_rate, seed=seed)  # (B, 3, T)
    audio = model.eval().generate(mel, speaker, noise=noise, temperature=1.0, excitation=exc)
    with torch.no_grad():
        cond = model.frame_conditioning(mel, speaker)  # (B, C, F)
        lpc = model.frame_lpc(mel)  # (B, p, F) or None
    return mel, speaker, noise, exc, audio, cond, None if lpc is None else _np(lpc)


def teacher_step_parity(
    model: nn.Module, onnx_model, frames: int = 3, batch: int = 2, seed: int = 0
) -> Parity:
    """The step graph, one call per sample, reproduces ``generate`` with the same noise and excitation."""
    sess = session(onnx_model)
    _, _, noise, exc, ref, cond, lpc = _teacher_reference(model, frames, batch, seed)
    e = _np(exc)  # (B, 3, T)
    hop = model.cfg.hop_length
    up = _np(model.stack.upsampler(cond))  # (B, C, T) per-sample conditioning
    n_states = graphs.count_states([i.name for i in sess.get_inputs()])
    state = [_np(s) for s in model.init_state(batch)]
    if len(state) != n_states:
        raise ParityError(f"teacher_step: graph has {n_states} caches, the model {len(state)}")
    names = graphs.teacher_step(n_states, lpc is not None).input_names
    x = np.zeros((batch, 1), np.float32)
    z = _np(noise)
    out = np.zeros_like(z)
    for t in range(z.shape[1]):
        lpc_t = [] if lpc is None else [lpc[:, :, t // hop]]  # (B, p): the sample's frame
        feeds = [x, up[:, :, t], e[:, :, t], *lpc_t, z[:, t], *state]
        res = sess.run(None, dict(zip(names, feeds, strict=True)))
        out[:, t] = res[0]
        x = res[0][:, None]
        state = res[3:]
    p = Parity("teacher_step", bound=BOUNDS["teacher"])
    p.add(f"B={batch},T={z.shape[1]}", _np(ref), out)
    return p.check()


def run_teacher_block(
    sess: ort.InferenceSession,
    cond: np.ndarray,
    excitation: np.ndarray,
    noise: np.ndarray,
    hop: int,
    runs,
    lpc: np.ndarray | None = None,
) -> np.ndarray:
    """Generate with the block graph, ``runs`` frames per call in turn (cycled): cond (B, C, F)
    frame-rate conditioning, excitation (B, 3, F*hop) of the whole utterance (each call gets its
    samples), noise (B, F*hop), lpc (B, p, F) an LP teacher's coefficients (each call gets its
    frames) -> audio (B, F*hop)."""
    B, _, F = cond.shape
    padded = np.concatenate(
        [cond[:, :, :1], cond, cond[:, :, -1:]], axis=2
    )  # (B, C, F + 2), edges replicated
    n_states = graphs.count_states([i.name for i in sess.get_inputs()])
    names = graphs.teacher_block(n_states, lpc is not None).input_names
    state = [
        np.zeros((B, i.shape[1], i.shape[2]), np.float32)
        for i in sess.get_inputs()
        if i.name.startswith("state_")
    ]
    x = np.zeros((B, 1), np.float32)
    out = []
    f0, k = 0, 0
    while f0 < F:
        n = min(runs[k % len(runs)], F - f0)
        a, b = f0 * hop, (f0 + n) * hop
        lpc_f = [] if lpc is None else [lpc[:, :, f0 : f0 + n]]  # (B, p, n)
        feeds = [padded[:, :, f0 : f0 + n + 2], excitation[:, :, a:b], *lpc_f, noise[:, a:b], x, *state]
        res = sess.run(None, dict(zip(names, feeds, strict=True)))
        out.append(res[0])
        x, state = res[1], res[2:]
        f0, k = f0 + n, k + 1
    return np.concatenate(out, axis=1)


def teacher_block_parity(model: nn.Module, onnx_model, frames: int = 7, seed: int = 0) -> Parity:
    """The block graph (in-graph upsampling + Scan), a varying number of frames per call, reproduces
    ``generate`` with the same noise and excitation: at batch 1 (as the engine runs it, with the
    batch dimension fixed) and at batch 2 (dynamic)."""
    p = Parity("teacher_block", bound=BOUNDS["teacher"])
    for batch in (1, 2):
        sess = session(onnx_model, batch_one=batch == 1)
        _, _, noise, exc, ref, cond, lpc = _teacher_reference(model, frames, batch, seed + batch)
        hop = model.cfg.hop_length
        got = run_teacher_block(sess, _np(cond), _np(exc), _np(noise), hop, runs=(1, 2, 3), lpc=lpc)
        p.add(f"B={batch},F={frames} in runs of 1,2,3", _np(ref), got)
    return p.check()
