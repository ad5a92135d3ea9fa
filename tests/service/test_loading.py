"""Bundle discovery (service.loading): one definition, used by the server, the CLI and evaluation."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from service.loading import bundle_dirs, find_bundle, open_voice
from service.sessions import CPU
from service.types import EngineLoadError

VOICES = Path(__file__).resolve().parents[1] / "fixtures" / "voices"


@pytest.fixture
def voices(tmp_path: Path) -> Path:
    for name in ("b", "a"):
        shutil.copytree(VOICES / "tiny", tmp_path / name)
    (tmp_path / "not-a-bundle").mkdir()
    (tmp_path / "stray.json").write_text("{}")
    return tmp_path


def test_bundle_dirs_are_the_folders_with_a_manifest_sorted(voices):
    assert [p.name for p in bundle_dirs(voices)] == ["a", "b"]
    assert bundle_dirs(voices / "not-a-bundle") == []


def test_find_bundle_by_name_or_path_else_one_line_naming_the_voices(voices):
    assert find_bundle("b", voices) == voices / "b"
    assert find_bundle(str(voices / "a"), voices / "not-a-bundle") == voices / "a"
    with pytest.raises(EngineLoadError, match=r"^no voice 'nope' in .* \(voices: a, b\)$"):
        find_bundle("nope", voices)
    with pytest.raises(EngineLoadError, match=r"\(voices: none\)$"):
        find_bundle("nope", voices / "not-a-bundle")


def test_evaluation_finds_bundles_through_the_loader(voices, monkeypatch):
    from evaluation import voices as eval_voices
    from service import loading

    seen = []
    monkeypatch.setattr(loading, "find_bundle", lambda v, d: seen.append((v, d)) or d / v)
    assert eval_voices.find_bundle("a", voices) == voices / "a" and seen == [("a", voices)]


def test_evaluation_reports_a_missing_voice_as_its_own_error(voices):
    from evaluation.errors import EvalError
    from evaluation.voices import find_bundle as eval_find

    with pytest.raises(EvalError, match=r"^no voice 'nope' in .* \(voices: a, b\)$"):
        eval_find("nope", voices)


def test_open_voice_loads_one_bundle_on_the_cpu():
    voice = open_voice(VOICES / "tiny", device="cpu", student_threads=1)
    assert voice.name == "tiny" and all(g.provider == CPU for g in voice.graphs.values())
