"""`parawave synth` (model.synth.text_to_mel) and the server (service.engine.OnnxEngine) cut the same
text into the same sentences and phoneme ids: both go through model.text.frontend.prepare_text."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from model.synth import text_to_mel
from service.loading import load_engine
from service.types import SynthesisRequest

VOICES = Path(__file__).resolve().parents[1] / "fixtures" / "voices"

# abbreviations that end a sentence or not ("Main St. They", "Mr.", "U.S."), numbers, money, a
# decimal inside a sentence, an ellipsis before a capital, brackets, markdown-ish and tag-like markup
TRICKY = (
    "Mr. and Mrs. Jones live at 12 Main St. They own 3 cats. The U.S. Army paid $1,000,000 on Jan. 5. "
    "Version 2.0 shipped... Really? (That's a lot.) *Bold* and <b>tags</b> cost 3.5% more; call "
    "555-123-4567 at 3 p.m. Dr. Smith agreed!"
)


class RecordingModel:
    """Stands in for AcousticModel.infer: records the ids it is given, one frame per phoneme."""

    def __init__(self, n_mels: int = 80):
        self.n_mels = n_mels
        self.ids: list[np.ndarray] = []

    def infer(self, ids, lengths, speakers, speed, pitch, return_f0=False):
        self.ids.append(ids[0, : int(lengths[0])].numpy().copy())
        L = ids.shape[1]
        return torch.zeros(1, self.n_mels, L), torch.ones(1, L, dtype=torch.long), torch.zeros(1, L)


@pytest.fixture(scope="module")
def engine():
    return load_engine(VOICES, device="cpu", require_cuda=False)


@pytest.mark.parametrize("text", [TRICKY, "Hello world. It is 2 o'clock!", "  Hi   there...  Bye. "])
def test_synth_and_the_server_give_the_same_ids(engine, text):
    voice = engine.voice("tiny")
    ckpt = {"config": {"data": {"symbols": voice.manifest.symbols}}}
    model = RecordingModel()
    _, info = text_to_mel(model, ckpt, text)
    _, _, served = engine._check(SynthesisRequest(text, "tiny", "alpha"))  # what the engine speaks
    assert len(model.ids) == len(served) == len(info)
    for synth_ids, s in zip(model.ids, served, strict=True):
        np.testing.assert_array_equal(synth_ids, s.ids)


def test_the_tricky_text_is_cut_where_it_is_written(engine):
    """Sentences are split on the text as written, then normalized: "Main St. They" ends a sentence
    after "Street" (normalizing first reads "Main Saint They" as one sentence)."""
    voice = engine.voice("tiny")
    _, info = text_to_mel(RecordingModel(), {"config": {"data": {"symbols": voice.manifest.symbols}}}, TRICKY)
    texts = [i["text"] for i in info]
    assert texts[0] == "Mister and Missus Jones live at twelve Main Street."
    assert texts[1] == "They own three cats."
    assert "Version two point zero shipped." in texts and "Really?" in texts
