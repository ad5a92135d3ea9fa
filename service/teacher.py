"""The teacher's generation loop (torch-free): ``teacher_cond`` once per utterance, then
``teacher_block`` a few mel frames per call, carrying the caches from call to call.

Frames per call: ``teacher_frames_per_call`` when set, else calibrated from the measured speed so
that a call takes ~:data:`TEACHER_CALL_SECONDS` (the cancel flag is looked at between calls). The
measured speed is the one piece of shared mutable state of a voice, guarded by a lock.

A linear-prediction teacher (issue 38; the LP form of the graphs in :mod:`service.graphs`):
``teacher_cond`` also gives the per-frame LPC coefficients (1, p, F), and each ``teacher_block`` call
gets its frames' slice of them; the LP history is one more cache, carried like the others. A voice
whose two teacher graphs disagree on LP is refused at load.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator

import numpy as np

from service import graphs
from service.sessions import ARENA_MAX_FRAMES, Graph
from service.types import CancelFlag, EngineLoadError

TEACHER_CALL_SECONDS = 0.1  # aim for this much work per teacher_block call (cancel latency)
TEACHER_MAX_FRAMES = 64  # frames per teacher_block call at most


class TeacherLoop:
    """A voice's teacher graphs and how many frames one ``teacher_block`` call takes."""

    def __init__(self, cond: Graph, block: Graph, hop: int, frames_per_call: int | None = None):
        self.cond = cond
        self.block = block
        self.hop = hop
        self.frames = frames_per_call  # frames per teacher_block call; None = calibrated
        self._lock = threading.Lock()
        self._frame_seconds: float | None = None  # measured cost of one frame
        self.state_shapes = [
            (int(i.shape[1]), int(i.shape[2]))
            for name, i in block.inputs.items()
            if name.startswith("state_")
        ]
        self.lp = graphs.is_lp(block.spec.input_names)  # a linear-prediction teacher's graphs
        if graphs.is_lp(cond.spec.output_names) != self.lp:
            raise EngineLoadError(
                f"{cond.path}: teacher_cond {'has' if not self.lp else 'lacks'} the {graphs.LPC!r} output "
                f"but teacher_block {'lacks' if not self.lp else 'has'} the {graphs.LPC!r} input "
                "(a linear-prediction teacher needs both, any other neither)"
            )

    def frames_per_call(self) -> int:
        if self.frames:
            return self.frames
        with self._lock:
            sec = self._frame_seconds
        if sec is None:
            return 1
        return int(min(TEACHER_MAX_FRAMES, max(1, math.floor(TEACHER_CALL_SECONDS / max(sec, 1e-6)))))

    def note_speed(self, frames: int, seconds: float) -> None:
        per = seconds / frames
        with self._lock:
            old = self._frame_seconds
            self._frame_seconds = per if old is None else 0.7 * old + 0.3 * per

    def generate(
        self,
        mel: np.ndarray,
        speaker: np.ndarray,
        rng: np.random.Generator,
        cancel: CancelFlag | None,
        temperature: float,
        excitation: Callable[[int], np.ndarray],
    ) -> Iterator[tuple[np.ndarray, bool]]:
        """Mel (n_mels, F) -> (audio piece, is the last piece) ...; ``speaker``: the conditioning
        graph's speaker feed; noise: temperature * N(0, 1) from ``rng``; ``excitation(frames)``: the
        excitation (3, frames*hop) of the whole utterance, sliced per call, so the pieces equal one
        call over all frames (so are an LP teacher's coefficients)."""
        cond_out = self.cond.run(
            mel[None].astype(np.float32), speaker, shrink_arena=mel.shape[1] > ARENA_MAX_FRAMES
        )
        cond = cond_out[0]  # (1, C, F)
        lpc = cond_out[1] if self.lp else None  # (1, p, F)
        padded = np.concatenate([cond[:, :, :1], cond, cond[:, :, -1:]], axis=2)  # (1, C, F + 2)
        n_frames = cond.shape[2]
        exc = excitation(n_frames)[None]  # (1, 3, F*hop)
        state = [np.zeros((1, c, k), np.float32) for c, k in self.state_shapes]
        x = np.zeros((1, 1), np.float32)
        f = 0  # first frame of the next call
        while f < n_frames:
            if cancel is not None and cancel.is_set():
                return
            n = min(self.frames_per_call(), n_frames - f)
            noise = rng.standard_normal((1, n * self.hop), dtype=np.float32)
            if temperature != 1.0:
                noise *= temperature
            t0 = time.perf_counter()
            window = exc[:, :, f * self.hop : (f + n) * self.hop]  # (1, 3, n*hop)
            lpc_f = () if lpc is None else (lpc[:, :, f : f + n],)  # (1, p, n)
            out = self.block.run(padded[:, :, f : f + n + 2], window, *lpc_f, noise, x, *state)
            self.note_speed(n, time.perf_counter() - t0)
            x, state = out[1], out[2:]
            f += n
            yield out[0][0], f >= n_frames
