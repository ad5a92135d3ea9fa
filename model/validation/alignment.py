"""Check a learned alignment against flite's own phone end times (``flite -psdur``).

The two sides use different phone sets: our symbols are espeak-ng IPA code points (stress and
length marks, spaces and punctuation are symbols of their own), flite speaks CMU ARPAbet-like
phones with ``pau`` for pauses. The comparison, step by step:

1. **Our phones.** The IPA string is cut into phone units: one letter plus its length/syllabic
   marks (``ɜː``), and the two-letter diphthongs and affricates (``aɪ aʊ eɪ oʊ ɔɪ tʃ dʒ``). Each
   unit gets a set of ARPAbet labels it may be spoken as (``ɾ`` -> t or d, ``ə`` -> ax or ah, ...).
2. **Sequence alignment.** A Needleman-Wunsch alignment of our units with flite's phones (pauses
   removed): cost 0 for a compatible label, 1 for another phone of the same kind (vowel/vowel,
   consonant/consonant), 2 otherwise, 1 per gap. Only compatible pairs (cost 0) are compared;
   the fraction of flite phones matched is reported with the error so a poor match is visible.
3. **Our boundary times.** Frame counts per symbol (the hard alignment) give symbol start/end
   times, frame ``f`` starting at ``f * hop / sample_rate``. The end of a unit is its boundary
   with the next unit. Symbols that carry no sound of their own (spaces, stress marks) sit
   between units; their frames are split evenly between the neighbours (the boundary is the
   middle of that gap). Punctuation stands for a pause (flite's ``pau``): a unit followed by
   punctuation ends where the punctuation starts.
4. **Error.** |our end - flite end| in ms for every compatible pair, pooled over clips.

The frame grid (12.5 ms at 16 kHz / hop 200) alone gives errors of up to half a frame; the
first unit also carries the leading silence (we have no start symbol), which does not move its
end. The result is a check of agreement, not a proof of correctness for either side.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from model.data.corpus import durations_dir

log = logging.getLogger(__name__)

PAUSE = "pau"
PUNCTUATION = set("!'(),-.:;?\"«»“”¡¿—…")
SILENT = {" ", "ˈ", "ˌ", "‿", "|", "‖", "↓", "↑", "→", "↗", "↘"}  # no sound of their own
MODIFIERS = set("ːˑ\u0329\u032f\u0303ʰʲʷˠˤ˞ʴ")  # belong to the letter before them
DIGRAPHS = {"aɪ", "aʊ", "eɪ", "oʊ", "ɔɪ", "tʃ", "dʒ", "əʊ"}

# fmt: off
VOWELS = {"aa", "ae", "ah", "ao", "aw", "ax", "axr", "ay", "eh", "er", "ey", "ih", "iy", "ow", "oy", "uh", "uw"}
# fmt: on

# IPA unit (modifiers stripped, except length where it changes the phone) -> ARPAbet labels
IPA_TO_ARPABET: dict[str, set[str]] = {
    # vowels
    "ə": {"ax", "ah"},
    "ɐ": {"ax", "ah"},
    "ʌ": {"ah", "ax", "aa"},
    "æ": {"ae"},
    "a": {"aa", "ae"},
    "ɑ": {"aa"},
    "ɑː": {"aa"},
    "ɒ": {"aa", "ao"},
    "ɔ": {"ao"},
    "ɔː": {"ao"},
    "ɛ": {"eh"},
    "e": {"ey", "eh"},
    "ɪ": {"ih", "ax", "iy"},
    "ᵻ": {"ih", "ax"},
    "ɨ": {"ih", "ax"},
    "i": {"iy", "ih"},
    "iː": {"iy"},
    "ʊ": {"uh"},
    "u": {"uw"},
    "uː": {"uw"},
    "ɜ": {"er"},
    "ɜː": {"er"},
    "ɚ": {"er", "axr"},
    "ɝ": {"er"},
    "o": {"ow"},
    "oː": {"ow"},
    "aɪ": {"ay"},
    "aʊ": {"aw"},
    "eɪ": {"ey"},
    "oʊ": {"ow"},
    "əʊ": {"ow"},
    "ɔɪ": {"oy"},
    # consonants
    "p": {"p"},
    "b": {"b"},
    "t": {"t"},
    "d": {"d"},
    "k": {"k"},
    "ɡ": {"g"},
    "g": {"g"},
    "f": {"f"},
    "v": {"v"},
    "θ": {"th"},
    "ð": {"dh"},
    "s": {"s"},
    "z": {"z"},
    "ʃ": {"sh"},
    "ʒ": {"zh"},
    "h": {"hh"},
    "m": {"m", "em"},
    "n": {"n", "en"},
    "ŋ": {"ng"},
    "l": {"l", "el"},
    "ɫ": {"l", "el"},
    "ɹ": {"r"},
    "r": {"r"},
    "w": {"w"},
    "j": {"y"},
    "tʃ": {"ch"},
    "dʒ": {"jh"},
    "ɾ": {"t", "d"},
    "ʔ": {"t"},
    "x": {"k", "hh"},
}


@dataclass(frozen=True)
class Unit:
    """One of our phones: ``key`` (IPA), symbols ``first..last`` (inclusive) in the phoneme string."""

    key: str
    first: int
    last: int

    @property
    def labels(self) -> set[str]:
        return IPA_TO_ARPABET.get(self.key) or IPA_TO_ARPABET.get(self.key.rstrip("ː"), set())

    @property
    def is_vowel(self) -> bool:
        return bool(self.labels & VOWELS) if self.labels else self.key[0] in "aeiouəɐʌæɑɒɔɛɪᵻɨʊɜɚɝ"


@dataclass
class BoundaryResult:
    errors_ms: list[float] = field(default_factory=list)  # one per compared boundary
    n_units: int = 0  # our phone units
    n_flite: int = 0  # flite phones (pauses excluded)
    n_matched: int = 0  # compatible pairs compared

    def extend(self, other: BoundaryResult) -> None:
        self.errors_ms.extend(other.errors_ms)
        self.n_units += other.n_units
        self.n_flite += other.n_flite
        self.n_matched += other.n_matched

    def summary(self) -> dict:
        e = np.asarray(self.errors_ms, dtype=np.float64)
        pct = (lambda q: float(np.percentile(e, q))) if e.size else (lambda q: float("nan"))
        return {
            "mean_abs_ms": float(e.mean()) if e.size else float("nan"),
            "median_ms": pct(50),
            "p90_ms": pct(90),
            "within_20ms": float((e <= 20).mean()) if e.size else float("nan"),
            "boundaries": int(e.size),
            "matched_fraction": self.n_matched / max(self.n_flite, 1),
        }


def ipa_units(phonemes: str) -> list[Unit]:
    """Cut an IPA string into phone units (silent symbols and punctuation are not units)."""
    units: list[Unit] = []
    i, n = 0, len(phonemes)
    while i < n:
        c = phonemes[i]
        if c in SILENT or c in PUNCTUATION or c.isspace() or c in MODIFIERS:
            if c in MODIFIERS and units and units[-1].last == i - 1:  # a mark on the previous phone
                u = units[-1]
                key = u.key + c if c == "ː" else u.key
                units[-1] = Unit(key, u.first, i)
            i += 1
            continue
        if phonemes[i : i + 2] in DIGRAPHS:
            units.append(Unit(phonemes[i : i + 2], i, i + 1))
            i += 2
        else:
            units.append(Unit(c, i, i))
            i += 1
    return units


def read_flite_durations(path: str | os.PathLike) -> list[tuple[str, float]]:
    """``phone:end_seconds`` tokens (whitespace or newline separated) -> [(phone, end_s)]."""
    out = []
    for tok in Path(path).read_text().split():
        phone, _, end = tok.rpartition(":")
        if not phone:
            raise ValueError(f"{path}: bad token {tok!r}")
        out.append((phone, float(end)))
    return out


def _cost(u: Unit, phone: str) -> int:
    if phone in u.labels:
        return 0
    return 1 if u.is_vowel == (phone in VOWELS) else 2


def match_phones(units: list[Unit], phones: list[str]) -> list[tuple[int, int]]:
    """Needleman-Wunsch over (units, flite phones); returns compatible pairs (unit idx, phone idx)."""
    n, m = len(units), len(phones)
    gap = 1
    D = np.zeros((n + 1, m + 1), dtype=np.int64)
    D[:, 0] = np.arange(n + 1) * gap
    D[0, :] = np.arange(m + 1) * gap
    C = np.array([[_cost(u, p) for p in phones] for u in units], dtype=np.int64).reshape(n, m)
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            D[i, j] = min(D[i - 1, j - 1] + C[i - 1, j - 1], D[i - 1, j] + gap, D[i, j - 1] + gap)
    pairs = []
    i, j = n, m
    while i > 0 and j > 0:
        if D[i, j] == D[i - 1, j - 1] + C[i - 1, j - 1]:
            if C[i - 1, j - 1] == 0:
                pairs.append((i - 1, j - 1))
            i, j = i - 1, j - 1
        elif D[i, j] == D[i - 1, j] + gap:
            i -= 1
        else:
            j -= 1
    return pairs[::-1]


def unit_end_frames(phonemes: str, durations: list[int] | np.ndarray, units: list[Unit]) -> np.ndarray:
    """End of every unit in (fractional) frames, by the gap rule in the module docstring."""
    d = np.asarray(durations, dtype=np.float64)
    if d.shape[0] != len(phonemes):
        raise ValueError(f"{d.shape[0]} durations for {len(phonemes)} phoneme symbols")
    ends = np.cumsum(d)  # (L,) symbol end frames
    starts = ends - d
    out = np.zeros(len(units))
    for k, u in enumerate(units):
        nxt = units[k + 1].first if k + 1 < len(units) else len(phonemes)
        gap = range(u.last + 1, nxt)
        punct = [s for s in gap if phonemes[s] in PUNCTUATION]
        if punct:
            out[k] = starts[punct[0]]
        elif len(gap):  # silent symbols only: split their frames between the neighbours
            gap_end = starts[nxt] if nxt < len(phonemes) else ends[-1]
            out[k] = 0.5 * (ends[u.last] + gap_end)
        else:
            out[k] = ends[u.last]
    return out


def boundary_errors(
    phonemes: str, durations: list[int] | np.ndarray, flite: list[tuple[str, float]], frame_s: float
) -> BoundaryResult:
    """Compare one clip: symbol durations (frames) of ``phonemes`` vs flite's [(phone, end_s)]."""
    units = ipa_units(phonemes)
    fl = [(p, t) for p, t in flite if p != PAUSE]
    pairs = match_phones(units, [p for p, _ in fl])
    ends = unit_end_frames(phonemes, durations, units) * frame_s
    errors = [abs(ends[u] - fl[f][1]) * 1000.0 for u, f in pairs]
    return BoundaryResult(errors, len(units), len(fl), len(pairs))


# ---------------------------------------------------------------------------------------------
# Corpus helpers (a corpus rendered with ``parawave data render --durations``)
# ---------------------------------------------------------------------------------------------


def clip_boundary_errors(corpus, clip_id: str, durations, frame_s: float) -> BoundaryResult | None:
    """Boundary errors of one clip of a :class:`model.data.corpus.Corpus`; None when it cannot be
    compared (no flite timings for it, or its ids are not one per phoneme code point)."""
    d = durations_dir(corpus.path)
    entry = (corpus.manifest or {}).get(clip_id)
    if d is None or entry is None or not (d / f"{clip_id}.txt").is_file():
        return None
    phonemes = entry["phonemes"]
    durations = np.asarray(durations)[: len(entry["ids"])]
    if len(entry["ids"]) != len(phonemes):
        return None
    return boundary_errors(phonemes, durations, read_flite_durations(d / f"{clip_id}.txt"), frame_s)


def alignment_batch_stats(corpus, ids: list[str], durations, audio_cfg) -> BoundaryResult:
    """Pool the boundary errors of a batch: ``durations`` (B, L) frames per symbol (tensor or array)."""
    if hasattr(durations, "detach"):
        durations = durations.detach().cpu().numpy()
    frame_s = audio_cfg.hop_length / audio_cfg.sample_rate
    total = BoundaryResult()
    for clip_id, row in zip(ids, durations, strict=True):
        res = clip_boundary_errors(corpus, clip_id, row, frame_s)
        if res is not None:
            total.extend(res)
    return total


# ---------------------------------------------------------------------------------------------
# Whole-split evaluation of an acoustic checkpoint
# ---------------------------------------------------------------------------------------------


def evaluate_checkpoint(
    checkpoint: str | os.PathLike, corpus_dir: str | os.PathLike, split: str = "val", batch_size: int = 8
) -> dict:
    """Alignment and duration report of an acoustic checkpoint (EMA weights) on a corpus split.

    - boundary: learned (teacher-forced MAS) alignment vs flite's phone end times (when the corpus
      has ``durations/``), see :func:`boundary_errors`;
    - total_duration: relative error of the predicted total duration (speed 1) against the real
      clip, |pred - true| / true, as a distribution;
    - phoneme_duration: |predicted - aligned| frames per phoneme symbol.
    """
    import torch
    from torch.utils.data import DataLoader

    from model.acoustic import acoustic_from_checkpoint
    from model.checkpoint import load_checkpoint
    from model.data.config import AudioConfig
    from model.data.corpus import Corpus
    from model.data.dataset import TTSDataset, collate_tts

    ckpt = load_checkpoint(checkpoint)
    model = acoustic_from_checkpoint(ckpt)
    audio = AudioConfig.from_dict(ckpt["config"]["audio"])
    corpus = Corpus(corpus_dir)
    dataset = TTSDataset(corpus, split, audio)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_tts)
    boundary = BoundaryResult()
    rel, phone_err = [], []
    with torch.no_grad():
        for b in loader:
            out = model(b["phonemes"], b["phoneme_lengths"], b["mel"], b["mel_lengths"], b["speaker"])
            boundary.extend(alignment_batch_stats(corpus, b["ids"], out["durations"], audio))
            _, pred = model.infer(b["phonemes"], b["phoneme_lengths"], b["speaker"], 1.0)
            true = b["mel_lengths"].float()
            rel += ((pred.sum(1).float() - true) / true).tolist()
            mask = out["text_mask"]
            phone_err += (pred - out["durations"]).abs()[mask].float().tolist()
    r = np.abs(np.asarray(rel))
    pe = np.asarray(phone_err)
    report = {
        "checkpoint": str(checkpoint),
        "step": int(ckpt["step"]),
        "split": split,
        "clips": len(dataset),
        "total_duration": {
            "mean_abs_rel": float(r.mean()),
            "median_abs_rel": float(np.median(r)),
            "p90_abs_rel": float(np.percentile(r, 90)),
            "max_abs_rel": float(r.max()),
            "within_15pct": float((r <= 0.15).mean()),
            "mean_signed_rel": float(np.mean(rel)),
        },
        "phoneme_duration_frames": {
            "mean_abs": float(pe.mean()),
            "median_abs": float(np.median(pe)),
            "p90_abs": float(np.percentile(pe, 90)),
        },
    }
    if boundary.n_flite:
        report["boundary"] = boundary.summary()
    return report


def main(argv: list[str] | None = None) -> int:
    """``python -m model.validation.alignment CKPT CORPUS [--split val]``: print the report as JSON."""
    import argparse
    import json
    import sys

    parser = argparse.ArgumentParser(description=evaluate_checkpoint.__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("corpus")
    parser.add_argument("--split", default="val", choices=("train", "val", "test"))
    args = parser.parse_args(argv)
    from model.checkpoint import UserError

    try:
        report = evaluate_checkpoint(args.checkpoint, args.corpus, args.split)
    except (UserError, ValueError, OSError) as exc:  # CorpusError is a ValueError
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
