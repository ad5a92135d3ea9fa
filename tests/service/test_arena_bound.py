"""ONNX Runtime's CPU arena keeps the peak of the largest input a session has seen: the engine gives
back what outsized runs took (service/sessions.py, ARENA_MAX_PHONEMES / ARENA_MAX_FRAMES), so a request
whose sentence normalizes to thousands of phonemes does not leave the process hundreds of MiB larger."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from service import allocator, sessions
from service.loading import load_engine

SHIPPED = Path(__file__).resolve().parents[2] / "voices"
PHONEMES = 2000  # ~ what a 300-character sentence of 12-digit numbers becomes after normalization


@pytest.mark.skipif(allocator.heap_stats() is None, reason="reads glibc's count of mmap'ed blocks")
@pytest.mark.skipif(not (SHIPPED / "flite" / "voice.json").exists(), reason="needs the shipped voice")
def test_outsized_acoustic_runs_give_the_arena_back():
    engine = load_engine(SHIPPED, device="cpu", require_cuda=False)
    voice = engine.voice("flite")
    engine.warmup()
    ids = (np.arange(PHONEMES) % (voice.n_symbols - 3) + 2).astype(np.int64)  # (L,)
    assert PHONEMES > sessions.ARENA_MAX_PHONEMES
    before = allocator.heap_stats().mmapped  # ORT's arena chunks are large blocks: mmap'ed one by one
    for _ in range(2):
        mel, _ = voice.features([ids], [0], [1.0])[0]
        assert mel.shape[1] > 4 * PHONEMES // 2  # the run was as large as meant
    kept = allocator.heap_stats().mmapped - before
    assert kept < 48 << 20, f"the acoustic arena kept {kept >> 20} MiB after two outsized runs"
