"""API names -> engine names: model aliases and voice ids.

Voice ids (what the API's ``voice`` field takes):

* ``<speaker>`` when that speaker name is unique among the loaded bundles (the listed id), else
  ``<bundle>/<speaker>`` (always accepted too);
* ``<bundle>``: that bundle's first speaker;
* an OpenAI voice name (``alloy``, ``echo``, ... see ``settings.OPENAI_VOICES``): the speaker its
  table names when loaded, else the default voice (so OpenAI clients work with any bundle);
* a blend ``slt(2)+rms(1)``: a weighted mix of the speakers of one bundle (their speaker embeddings
  mixed inside every graph, bundle format 3; :meth:`VoiceCatalog.resolve_blend`).

Names are only looked up in these tables, never used to build a path.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from service.types import EngineLoadError, ModelKind, VoiceInfo

DEFAULT_ALIAS = "alloy"  # with no default voice configured, the speaker this OpenAI name maps to

MODEL_ALIASES: dict[str, ModelKind] = {
    "parawave-student": "student",
    "student": "student",
    "parawave": "student",
    "tts-1": "student",
    "gpt-4o-mini-tts": "student",
    "parawave-teacher": "teacher",
    "teacher": "teacher",
    "tts-1-hd": "teacher",
}
# OpenAI's model names are the ones clients send unasked: `tts-1-hd` asks for the best a voice has,
# which is the voice's own measured choice, VoiceInfo.best_model (its hd_model: the teacher by
# default, the student where the export found it better, and the student where the voice ships no
# teacher; the response's X-Parawave-Model says which). Our own names (`teacher`,
# `parawave-teacher`) and the reference endpoint never fall back.
HD_ALIASES = frozenset({"tts-1-hd"})
MODEL_IDS: dict[ModelKind, str] = {"student": "parawave-student", "teacher": "parawave-teacher"}


def resolve_model(name: str) -> ModelKind | None:
    return MODEL_ALIASES.get(name.strip().lower())


def is_hd_alias(name: str) -> bool:
    """Whether ``name`` asks for the voice's best model (its ``hd_model``) rather than a fixed one."""
    return name.strip().lower() in HD_ALIASES


@dataclass(frozen=True)
class VoiceEntry:
    id: str  # the listed API id (a blend: its canonical form, "slt(2)+rms(1)")
    voice: VoiceInfo
    speaker: str  # a blend: its first speaker
    blend: tuple[tuple[str, float], ...] | None = None  # ((speaker, weight), ...) of ``voice``


class BlendError(ValueError):
    """A voice blend that cannot be made (its message goes to the client)."""


# speaker(weight)+speaker(weight)...: a weight is a positive number, omitted = 1
BLEND_COMPONENT = r"\s*([^\s()+]+)\s*(?:\(\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*\))?\s*"
BLEND_PATTERN = rf"^{BLEND_COMPONENT}(?:\+{BLEND_COMPONENT})+$"
BLEND_SYNTAX = "speaker(weight)+speaker(weight)[+...]"
MAX_BLEND = 8


class VoiceCatalog:
    def __init__(
        self,
        voices: Sequence[VoiceInfo],
        default: str | None = None,
        aliases: Mapping[str, str] | None = None,
    ) -> None:
        if not voices or not any(v.speakers for v in voices):
            raise EngineLoadError("the engine loaded no voice (no bundle with a speaker)")
        counts: dict[str, int] = {}
        for v in voices:
            for s in v.speakers:
                counts[s] = counts.get(s, 0) + 1
        self.entries: list[VoiceEntry] = []
        self._names: dict[str, VoiceEntry] = {}
        for v in voices:
            for s in v.speakers:
                qualified = f"{v.name}/{s}"
                entry = VoiceEntry(s if counts[s] == 1 else qualified, v, s)
                self.entries.append(entry)
                self._names[entry.id] = entry
                self._names[qualified] = entry
        for v in voices:  # bundle name alone = its first speaker, unless a speaker is called so
            if v.speakers:
                self._names.setdefault(v.name, self._names[f"{v.name}/{v.speakers[0]}"])
        self.aliases = {k.lower(): t for k, t in (aliases or {}).items()}
        if default is None:  # the speaker OpenAI's "alloy" maps to, when loaded, else the first
            alloy = self.aliases.get(DEFAULT_ALIAS)
            self.default = self._names.get(alloy, self.entries[0]) if alloy else self.entries[0]
        else:
            found = self._names.get(default)
            if found is None:
                raise EngineLoadError(
                    f"default voice {default!r} is not loaded (voices: {', '.join(self.ids)})"
                )
            self.default = found

    @property
    def ids(self) -> list[str]:
        return [e.id for e in self.entries]

    def resolve(self, name: str | None) -> VoiceEntry | None:
        """The entry for an API voice name; None = unknown. ``None`` asks for the default voice."""
        if name is None:
            return self.default
        if name in self._names:
            return self._names[name]
        target = self.aliases.get(name.lower())
        if target is not None:
            return self._names.get(target, self.default)
        return None

    def resolve_blend(self, name: str) -> VoiceEntry | None:
        """A blend ``"slt(2)+rms(1)"`` (speakers of one bundle, by id or OpenAI name; weights > 0,
        omitted = 1) as an entry, None when ``name`` is no blend (no ``+``); BlendError when it is a
        blend that cannot be made."""
        if "+" not in name:
            return None
        parts = name.split("+")
        if len(parts) > MAX_BLEND:
            raise BlendError(f"a blend mixes at most {MAX_BLEND} speakers, got {len(parts)}")
        mix: list[tuple[VoiceEntry, float]] = []
        for part in parts:
            m = re.fullmatch(BLEND_COMPONENT, part)
            if not m:
                raise BlendError(
                    f"cannot read {part.strip()!r} in the blend {name!r}; write {BLEND_SYNTAX}, e.g. slt(2)+rms(1)"
                )
            entry = self.resolve(m.group(1))
            if entry is None or entry.blend is not None:
                raise BlendError(
                    f"unknown voice {m.group(1)!r} in the blend {name!r} (voices: {', '.join(self.ids)})"
                )
            weight = float(m.group(2)) if m.group(2) is not None else 1.0
            if not (math.isfinite(weight) and weight > 0):
                raise BlendError(
                    f"the weight of {m.group(1)!r} in the blend {name!r} must be a positive number"
                )
            mix.append((entry, weight))
        voices = {e.voice.name for e, _ in mix}
        if len(voices) > 1:
            raise BlendError(
                f"a blend mixes the speakers of one bundle; {name!r} spans {', '.join(sorted(voices))}"
            )
        speakers = [e.speaker for e, _ in mix]
        dup = sorted({s for s in speakers if speakers.count(s) > 1})
        if dup:
            raise BlendError(f"the blend {name!r} names {dup[0]!r} twice (give it one weight)")
        voice = mix[0][0].voice
        if not voice.blendable:
            why = (
                "it has one speaker" if len(voice.speakers) < 2 else "its bundle predates blending (format 2)"
            )
            raise BlendError(f"voice {voice.name!r} cannot blend speakers: {why}")
        canonical = "+".join(f"{e.id}({w:g})" for e, w in mix)
        return VoiceEntry(canonical, voice, speakers[0], tuple((e.speaker, w) for e, w in mix))

    def alias_table(self) -> dict[str, str]:
        """OpenAI name -> the voice id it resolves to here."""
        return {alias: self.resolve(alias).id for alias in sorted(self.aliases)}  # type: ignore[union-attr]
