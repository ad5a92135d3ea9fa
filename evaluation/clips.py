"""Which clips ``parawave eval`` scores (the first ``limit`` per speaker of a split, mapped to the
bundle's speakers), their noise seeds, and the record of what was measured on each."""

from __future__ import annotations

import logging
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from evaluation.errors import EvalError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Clip:
    id: str
    speaker: str  # corpus speaker name
    voice_speaker: str  # the bundle speaker that says it
    text: str  # raw text: what the server would be sent
    normalized: str  # the corpus's normalized text: the WER reference
    teacher: bool  # the teacher runs on this clip too


@dataclass
class ClipResult:
    id: str
    speaker: str
    reference_text: str
    teacher: bool
    transcripts: dict[str, str] = field(default_factory=dict)  # system -> ASR hypothesis
    # model -> ASR hypothesis of its copy synthesis (from the recording's mel): the vocoder's share
    # of the WER, apart from the acoustic model's
    copy_transcripts: dict[str, str] = field(default_factory=dict)
    copy: dict[str, dict[str, float]] = field(
        default_factory=dict
    )  # system -> pesq_wb, stoi, mcd_db, hnr_db, f0
    hnr: dict[str, float] = field(
        default_factory=dict
    )  # system (reference, text->audio of a model) -> HNR dB
    reference_seconds: float = 0.0
    tts_seconds: dict[str, float] = field(default_factory=dict)  # system -> text->audio length
    tts_wall_seconds: dict[str, float] = field(default_factory=dict)  # system -> synthesis wall time


def map_speakers(corpus_speakers: Sequence[str], voice_speakers: Sequence[str]) -> dict[str, str]:
    """Corpus speaker -> bundle speaker: same name; a single-speaker corpus whose name the bundle
    lacks (folder-named) is said by the bundle's default speaker; other unknown speakers are left out."""
    out = {s: s for s in corpus_speakers if s in voice_speakers}
    if not out and len(corpus_speakers) == 1:
        log.warning(
            "corpus speaker %r is not in the voice (speakers: %s); using its default speaker %r",
            corpus_speakers[0], ", ".join(voice_speakers), voice_speakers[0],
        )  # fmt: skip
        out = {corpus_speakers[0]: voice_speakers[0]}
    missing = [s for s in corpus_speakers if s not in out]
    if missing:
        log.warning("leaving out corpus speakers the voice lacks: %s", ", ".join(missing))
    return out


def select_clips(
    corpus,
    split: str,
    voice_speakers: Sequence[str],
    limit: int,
    teacher_limit: int,
    speakers: Sequence[str] | None = None,
) -> list[Clip]:
    """The first ``limit`` clips (0: all) per speaker of ``split``, in metadata order; the teacher
    on the first ``teacher_limit`` of them. Clips whose wav is missing are left out (warned)."""
    ids = corpus.ids(split)
    if not ids:
        raise EvalError(f"{corpus.path}: the {split!r} split has no clips")
    wanted = list(corpus.speakers) if not speakers else list(speakers)
    unknown = [s for s in wanted if s not in corpus.speakers]
    if unknown:
        raise EvalError(
            f"--speakers {','.join(unknown)}: not in the corpus (speakers: {', '.join(corpus.speakers)})"
        )
    mapping = map_speakers(wanted, voice_speakers)
    taken: dict[str, int] = {}
    out: list[Clip] = []
    for clip_id in ids:
        row = corpus.by_id[clip_id]
        if row.speaker not in mapping or (limit > 0 and taken.get(row.speaker, 0) >= limit):
            continue
        if not corpus.wav_path(clip_id).is_file():
            log.warning("%s: missing; clip left out", corpus.wav_path(clip_id))
            continue
        k = taken.get(row.speaker, 0)
        taken[row.speaker] = k + 1
        out.append(
            Clip(clip_id, row.speaker, mapping[row.speaker], row.text, row.normalized, k < teacher_limit)
        )
    if not out:
        raise EvalError(f"{corpus.path}: no clips of the {split!r} split for speakers {', '.join(wanted)}")
    return out


def clip_seed(seed: int, clip_id: str) -> int:
    """Noise seed of one clip: the same for a clip whatever else is evaluated with it."""
    return (seed * 1_000_003 + zlib.crc32(clip_id.encode("utf-8"))) % 2**32
