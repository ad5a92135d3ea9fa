"""service.catalog: API voice names -> (bundle, speaker), and the default voice."""

import pytest

from service.catalog import VoiceCatalog
from service.settings import OPENAI_VOICES
from service.types import EngineLoadError, VoiceInfo

FLITE = VoiceInfo("flite", 16000, ("awb", "rms", "slt"), ("student",))
OTHER = VoiceInfo("other", 16000, ("beta", "gamma"), ("student", "teacher"))


def test_default_is_the_speaker_alloy_maps_to_when_loaded_else_the_first():
    assert VoiceCatalog([FLITE], aliases=OPENAI_VOICES).default.speaker == "rms"
    assert VoiceCatalog([OTHER, FLITE], aliases=OPENAI_VOICES).default.speaker == "rms"
    assert VoiceCatalog([OTHER], aliases=OPENAI_VOICES).default.speaker == "beta"
    assert VoiceCatalog([FLITE]).default.speaker == "awb"  # no alias table: the first speaker
    assert VoiceCatalog([FLITE], default="awb", aliases=OPENAI_VOICES).default.speaker == "awb"
    with pytest.raises(EngineLoadError, match="not loaded"):
        VoiceCatalog([OTHER], default="slt", aliases=OPENAI_VOICES)


def test_names_resolve_to_speakers():
    catalog = VoiceCatalog([FLITE, OTHER], aliases=OPENAI_VOICES)
    assert catalog.resolve("echo").speaker == "rms" and catalog.resolve("fable").speaker == "awb"
    assert catalog.resolve("other").speaker == "beta"  # a bundle name: its first speaker
    assert catalog.resolve("other/gamma").speaker == "gamma" and catalog.resolve("gamma").voice is OTHER
    assert catalog.resolve("nobody") is None and catalog.resolve(None).speaker == "rms"
