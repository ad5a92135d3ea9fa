"""Voice blending: the catalog's "slt(2)+rms(1)" syntax, the HTTP contract (fake engine), the ONNX
engine on format 3 and format 2 bundles, the upgrade of a format 2 bundle, and the shipped voice."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from fake_engine import FakeEngine
from test_http_api import SPEECH, assert_envelope
from typer.testing import CliRunner

from model.wavenet import speaker_embedding
from service.catalog import BlendError, VoiceCatalog
from service.cli import app as cli
from service.loading import load_engine
from service.types import InputError, SynthesisRequest, VoiceInfo

ROOT = Path(__file__).resolve().parents[2]
VOICES = ROOT / "tests" / "fixtures" / "voices"
FORMAT2 = ROOT / "tests" / "fixtures" / "voices-format2"
SHIPPED = ROOT / "voices"
BLENDABLE = [
    VoiceInfo("fake", 16000, ("alpha", "beta", "delta"), blendable=True),
    VoiceInfo("other", 16000, ("gamma", "omega"), models=("student",)),  # format 2: cannot blend
]


# ------------------------------------------------------------------ the syntax


def test_blend_syntax_resolves_speakers_of_one_bundle():
    catalog = VoiceCatalog(BLENDABLE, aliases={"nova": "beta"})
    e = catalog.resolve_blend("alpha(2)+beta(1)")
    assert (e.id, e.voice.name, e.speaker, e.blend) == (
        "alpha(2)+beta(1)",
        "fake",
        "alpha",
        (("alpha", 2.0), ("beta", 1.0)),
    )
    e = catalog.resolve_blend(" alpha + nova (0.5) + fake/delta(1e-1) ")
    assert (
        e.blend == (("alpha", 1.0), ("beta", 0.5), ("delta", 0.1)) and e.id == "alpha(1)+beta(0.5)+delta(0.1)"
    )
    assert catalog.resolve_blend("alpha") is None  # no "+": not a blend


@pytest.mark.parametrize(
    "name, message",
    [
        ("alpha(2)+nobody(1)", "unknown voice 'nobody' in the blend"),
        ("alpha(0)+beta(1)", "weight of 'alpha' in the blend 'alpha(0)+beta(1)' must be a positive number"),
        ("alpha(-1)+beta(1)", "cannot read 'alpha(-1)'"),
        ("alpha(x)+beta", "cannot read 'alpha(x)'"),
        ("alpha+", "cannot read ''"),
        ("alpha(1)+alpha(2)", "names 'alpha' twice"),
        ("alpha+gamma", "a blend mixes the speakers of one bundle; 'alpha+gamma' spans fake, other"),
        ("gamma+omega", "voice 'other' cannot blend speakers: its bundle predates blending (format 2)"),
        ("+".join(["alpha"] * 9), "at most 8 speakers"),
    ],
)
def test_bad_blends_say_why(name, message):
    with pytest.raises(BlendError, match=message.replace("(", r"\(").replace(")", r"\)").replace("+", r"\+")):
        VoiceCatalog(BLENDABLE).resolve_blend(name)


# ------------------------------------------------------------------ HTTP


def test_blends_over_http(client_for):
    engine = FakeEngine(BLENDABLE)
    client = client_for(engine)
    r = client.post(SPEECH, json={"input": "Hi.", "voice": "beta(1)+alpha(1)", "response_format": "wav"})
    assert r.status_code == 200, r.text
    assert r.headers["x-parawave-voice"] == "beta(1)+alpha(1)"
    call = engine.calls[-1]
    assert (call.voice, call.speaker, call.blend) == ("fake", "beta", (("beta", 1.0), ("alpha", 1.0)))
    r = client.post(
        SPEECH, json={"input": "Hi.", "voice": {"id": "alpha+delta(3)"}, "response_format": "wav"}
    )
    assert r.status_code == 200 and engine.calls[-1].blend == (("alpha", 1.0), ("delta", 3.0))
    for bad in ("alpha+nobody", "gamma(1)+omega(1)", "alpha(0)+beta"):
        err = assert_envelope(client.post(SPEECH, json={"input": "Hi.", "voice": bad}), 400, param="voice")
        assert err["code"] == "invalid_voice_blend" and err["message"].startswith("Bad voice blend: ")
    listing = client.get("/v1/audio/voices").json()
    assert [v["blendable"] for v in listing["data"]] == [True, True, True, False, False]
    blending = listing["blending"]
    assert blending["example"] == "delta(2)+alpha(1)" and blending["voices"] == {
        "fake": ["alpha", "beta", "delta"]
    }
    assert "speaker embeddings" in blending["explanation"]
    voice = client.get("/openapi.json").json()["components"]["schemas"]["SpeechBody"]["properties"]["voice"]
    assert any("pattern" in option for option in voice["anyOf"])


# ------------------------------------------------------------------ engine


def audio(engine, **kw) -> np.ndarray:
    base = {"text": "Hello there. How are you?", "voice": "tiny", "speaker": "alpha", "seed": 11}
    return np.concatenate([c.audio for c in engine.synthesize(SynthesisRequest(**{**base, **kw}))])


@pytest.fixture(scope="module")
def tiny():
    return load_engine(VOICES, device="cpu", require_cuda=False, teacher_frames_per_call=4)


def test_engine_blends_are_weighted_embeddings(tiny):
    alpha, beta = audio(tiny), audio(tiny, speaker="beta")
    np.testing.assert_array_equal(audio(tiny, blend=(("alpha", 3.0),)), alpha)  # one speaker = its one-hot
    mix = audio(tiny, blend=(("alpha", 1.0), ("beta", 1.0)))
    np.testing.assert_array_equal(
        mix, audio(tiny, blend=(("beta", 2.0), ("alpha", 2.0)))
    )  # deterministic, normalized
    assert not np.array_equal(mix[: min(len(mix), len(alpha))], alpha[: min(len(mix), len(alpha))])
    assert not np.array_equal(mix[: min(len(mix), len(beta))], beta[: min(len(mix), len(beta))])
    teacher = audio(tiny, model="teacher", text="Hi.", blend=(("alpha", 1.0), ("beta", 1.0)))
    assert teacher.size > 0
    with pytest.raises(InputError, match="no speaker 'gamma'"):
        audio(tiny, blend=(("alpha", 1.0), ("gamma", 1.0)))
    voice = tiny.voice("tiny")
    np.testing.assert_allclose(voice.blend_weights((("alpha", 1.0), ("beta", 3.0))), [0.25, 0.75])


def test_speaker_embedding_mixes_rows():
    table = torch.nn.Embedding(3, 4)
    ids = torch.tensor([2, 0])
    one_hot = torch.eye(3)[ids]
    assert torch.equal(speaker_embedding(table, one_hot), table(ids))
    mix = speaker_embedding(table, torch.tensor([[0.5, 0.5, 0.0]]))
    torch.testing.assert_close(mix[0], (table.weight[0] + table.weight[1]) / 2)


def test_format2_bundle_loads_speaks_the_same_and_refuses_blends(tiny, tmp_path):
    old = load_engine(FORMAT2, device="cpu", require_cuda=False, teacher_frames_per_call=4)
    voice = old.voice("tiny")
    assert voice.manifest.format_version == 2 and not voice.blendable and not old.voices[0].blendable
    for speaker in ("alpha", "beta"):  # the same models, exported before and after the change
        np.testing.assert_array_equal(audio(old, speaker=speaker), audio(tiny, speaker=speaker))
    with pytest.raises(InputError, match="its bundle predates blending"):
        audio(old, blend=(("alpha", 1.0), ("beta", 1.0)))
    # ... and `parawave export upgrade` makes it blend, speaking exactly as before
    folder = tmp_path / "voices"
    result = CliRunner().invoke(cli, ["export", "upgrade", str(FORMAT2 / "tiny"), "--out", str(folder)])
    assert result.exit_code == 0, result.output
    assert (
        "acoustic       speaker ids -> speaker_weights; max abs difference on every speaker 0"
        in result.output
    )
    up = load_engine(folder, device="cpu", require_cuda=False, teacher_frames_per_call=4)
    assert up.voice("tiny").manifest.format_version == 3 and up.voice("tiny").blendable
    for kw in ({}, {"speaker": "beta"}, {"blend": (("alpha", 1.0), ("beta", 1.0))}):
        np.testing.assert_array_equal(audio(up, **kw), audio(tiny, **kw))
    again = CliRunner().invoke(cli, ["export", "upgrade", str(folder / "tiny")])
    assert again.exit_code == 2 and "format 3, not 2: nothing to upgrade" in again.output


def test_upgrade_refuses_a_graph_it_does_not_understand():
    import onnx

    from export.upgrade import UpgradeError, upgrade_graph

    model = onnx.load(FORMAT2 / "tiny" / "acoustic.onnx")
    gather = next(n for n in model.graph.node if "speaker" in n.input)
    gather.op_type = "Add"  # some other use of the speaker id
    del gather.attribute[:]
    with pytest.raises(UpgradeError, match="the speaker id feeds a Add node"):
        upgrade_graph(model, 2, "acoustic")


# ------------------------------------------------------------------ the shipped voice


@pytest.mark.skipif(not (SHIPPED / "flite" / "voice.json").exists(), reason="no shipped voice")
def test_shipped_fifty_fifty_blend_has_an_f0_between_its_speakers():
    """slt (female) and rms (male) mixed 1:1: the acoustic model's median F0 lies between theirs."""
    from model.text import default_symbols, normalize, phonemize

    engine = load_engine(SHIPPED, device="cpu", require_cuda=False)
    voice = engine.voice("flite")
    assert voice.blendable
    ids = np.asarray(
        default_symbols().encode(phonemize(normalize("The quick brown fox jumps over the lazy dog.")))
    )
    speakers = [
        voice.speaker_id("slt"),
        voice.speaker_id("rms"),
        voice.blend_weights((("slt", 1.0), ("rms", 1.0))),
    ]
    medians = [np.median(f0[f0 > 0]) for _, f0 in voice.features([ids] * 3, speakers, [1.0] * 3)]
    slt, rms, mix = medians
    assert rms < mix < slt, medians
