"""API names -> engine names: model aliases and voice ids.

Voice ids (what the API's ``voice`` field takes):

* ``<speaker>`` when that speaker name is unique among the loaded bundles (the listed id), else
  ``<bundle>/<speaker>`` (always accepted too);
* ``<bundle>``: that bundle's first speaker;
* an OpenAI voice name (``alloy``, ``echo``, ... see ``settings.OPENAI_VOICES``): the speaker its
  table names when loaded, else the default voice (so OpenAI clients work with any bundle).

Names are only looked up in these tables, never used to build a path.
"""

from __future__ import annotations

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
    id: str  # the listed API id
    voice: VoiceInfo
    speaker: str


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

    def alias_table(self) -> dict[str, str]:
        """OpenAI name -> the voice id it resolves to here."""
        return {alias: self.resolve(alias).id for alias in sorted(self.aliases)}  # type: ignore[union-attr]
