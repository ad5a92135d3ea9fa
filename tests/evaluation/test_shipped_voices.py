"""Every bundle shipped under voices/ loads, speaks every speaker at a plausible length and level,
and pocketsphinx recognises words of it: a guard against committing a broken or silent voice.
Sentences not in the training transcripts; fixed seeds, so the audio (and the check) repeats."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from evaluation.metrics import transcribe, wer_of
from evaluation.voices import load_voice

VOICES = Path(__file__).resolve().parents[2] / "voices"
BUNDLES = sorted(p.parent for p in VOICES.glob("*/voice.json"))
SENTENCES = [
    "The weather will be warm and sunny this afternoon.",
    "Please send me the report before Monday morning.",
    "She opened the window and looked at the garden.",
]
# pooled word error rate each speaker's student must beat on these three sentences; flite itself
# gets about a fifth of LJSpeech test words wrong through pocketsphinx and the shipped CPU voice a
# quarter (recipes/reports/flite-cpu), so this floor catches a broken voice, not a slightly worse one
MAX_WER = 0.5

pytestmark = pytest.mark.skipif(not BUNDLES, reason="no voice bundle under voices/")


@pytest.mark.parametrize("bundle", BUNDLES, ids=[b.name for b in BUNDLES])
def test_shipped_voice_speaks_intelligibly(bundle):
    from service.types import SynthesisRequest

    engine, voice = load_voice(bundle, "cpu")
    assert "student" in voice.models
    for speaker in voice.speakers:
        hyps = []
        for i, text in enumerate(SENTENCES):
            req = SynthesisRequest(text, voice.name, speaker, 1.0, "student", 1234 + i)
            audio = np.concatenate([c.audio for c in engine.synthesize(req)])  # (T,)
            seconds = len(audio) / voice.sample_rate
            words = len(text.split())
            assert 0.15 * words < seconds < 0.8 * words + 1.0, (speaker, text, seconds)  # ~2-6 words/s
            assert np.isfinite(audio).all() and 0.01 < np.abs(audio).max() <= 1.0
            hyps.append(transcribe(audio, voice.sample_rate))
        wer = wer_of(SENTENCES, hyps)
        assert wer < MAX_WER, (speaker, wer, hyps)
