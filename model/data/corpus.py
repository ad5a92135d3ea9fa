"""Reading an LJSpeech-format corpus: metadata, speakers, splits and the phoneme manifest.

torch-free and phonemizer-free: the GPU host reads corpora with this module.

Layout::

    <corpus>/metadata.csv     id|text|normalized text[|speaker]   (no 4th column: one speaker,
                                                                   named after the folder)
    <corpus>/wavs/<id>.wav
    <corpus>/splits.csv       optional, id|split with split in train/val/test; ids it does not list
                              are train
    <corpus>/phonemes.jsonl   the phoneme manifest (see model.data.manifest)
    <corpus>/symbols.json     the symbol table the manifest's ids refer to

Without splits.csv the split of a clip is a deterministic function of its id (sha256, so it is
the same on every machine and Python run): 2 % val, 2 % test, the rest train. For multi-voice
renders, whose ids are ``<speaker>_<source id>``, the hash is taken over the source id, so one
sentence lands in the same split for every voice and never leaks from train into val/test.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
VAL_FRACTION = 0.02
TEST_FRACTION = 0.02


class CorpusError(ValueError):
    """A corpus file is missing or malformed; the message names the file (and line)."""


@dataclass(frozen=True)
class MetadataRow:
    id: str
    text: str
    normalized: str
    speaker: str


def read_metadata(corpus_dir: str | os.PathLike) -> list[MetadataRow]:
    """Rows of ``<corpus>/metadata.csv`` in file order. Raises CorpusError on a malformed line."""
    corpus_dir = Path(corpus_dir)
    path = corpus_dir / "metadata.csv"
    if not path.is_file():
        raise CorpusError(f"{path}: not found (is {corpus_dir} an LJSpeech-format corpus?)")
    default_speaker = corpus_dir.resolve().name
    rows: list[MetadataRow] = []
    seen: set[str] = set()
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            parts = line.split("|")
            if len(parts) == 2:  # id|text: the text is its own normalized form
                parts.append(parts[1])
            if len(parts) not in (3, 4) or not parts[0].strip():
                raise CorpusError(
                    f"{path}:{lineno}: expected id|text|normalized text[|speaker], got {line!r}"
                )
            clip_id = parts[0].strip()
            if clip_id in seen:
                raise CorpusError(f"{path}:{lineno}: duplicate id {clip_id!r}")
            seen.add(clip_id)
            speaker = parts[3].strip() if len(parts) == 4 and parts[3].strip() else default_speaker
            normalized = parts[2] if parts[2].strip() else parts[1]
            rows.append(MetadataRow(clip_id, parts[1], normalized, speaker))
    if not rows:
        raise CorpusError(f"{path}: no clips")
    return rows


def hash_split(key: str) -> str:
    """Deterministic split of a clip key: val 2 %, test 2 %, train otherwise (sha256, stable)."""
    u = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") / 2.0**64  # [0, 1)
    if u < VAL_FRACTION:
        return "val"
    if u < VAL_FRACTION + TEST_FRACTION:
        return "test"
    return "train"


def split_key(row: MetadataRow) -> str:
    """What the hash split looks at: the source id of ``<speaker>_<source id>`` clips, else the id."""
    prefix = f"{row.speaker}_"
    if row.id.startswith(prefix) and len(row.id) > len(prefix):
        return row.id[len(prefix) :]
    return row.id


def read_splits_file(corpus_dir: str | os.PathLike) -> dict[str, str] | None:
    """``<corpus>/splits.csv`` as {id: split}, or None when the corpus has none."""
    path = Path(corpus_dir) / "splits.csv"
    if not path.is_file():
        return None
    out: dict[str, str] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            parts = [p.strip() for p in line.split("|")]
            if len(parts) != 2 or parts[1] not in SPLITS:
                raise CorpusError(f"{path}:{lineno}: expected id|train|val|test, got {line!r}")
            out[parts[0]] = parts[1]
    return out


def assign_splits(corpus_dir: str | os.PathLike, rows: list[MetadataRow]) -> dict[str, str]:
    """{id: split} for every row: splits.csv when present (unlisted ids: train), else hash split."""
    listed = read_splits_file(corpus_dir)
    if listed is None:
        return {r.id: hash_split(split_key(r)) for r in rows}
    unknown = set(listed) - {r.id for r in rows}
    if unknown:
        log.warning("splits.csv names %d ids not in metadata.csv (e.g. %s)", len(unknown), sorted(unknown)[0])
    return {r.id: listed.get(r.id, "train") for r in rows}


def read_manifest(corpus_dir: str | os.PathLike) -> dict[str, dict] | None:
    """``<corpus>/phonemes.jsonl`` as {id: entry}, or None when it does not exist."""
    path = Path(corpus_dir) / "phonemes.jsonl"
    if not path.is_file():
        return None
    out: dict[str, dict] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                out[entry["id"]] = entry
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise CorpusError(f"{path}:{lineno}: bad manifest line ({exc})") from None
    return out


def read_symbols(corpus_dir: str | os.PathLike) -> dict | None:
    """``<corpus>/symbols.json`` (a SymbolTable.to_dict()), or None when it does not exist."""
    path = Path(corpus_dir) / "symbols.json"
    if not path.is_file():
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def durations_dir(corpus_dir: str | os.PathLike) -> Path | None:
    """``<corpus>/durations`` when the corpus has flite phone timings (``parawave data render
    --durations``), else None."""
    d = Path(corpus_dir) / "durations"
    return d if d.is_dir() else None


class Corpus:
    """An LJSpeech-format corpus on disk: clips, speakers, splits and (when built) the manifest.

    Plain data only, so datasets holding it pickle cheaply into DataLoader workers.

    - ``rows``: metadata rows in file order; ``speakers``: sorted speaker names (index = speaker id)
    - ``split_of``: {id: split}; ``ids(split)``: ids of a split in metadata order (None: all)
    - ``manifest``: {id: entry} or None; ``symbols``: the symbol-table dict or None
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.rows = read_metadata(self.path)
        self.by_id = {r.id: r for r in self.rows}
        self.speakers = sorted({r.speaker for r in self.rows})
        self.speaker_ids = {name: i for i, name in enumerate(self.speakers)}
        self.split_of = assign_splits(self.path, self.rows)
        self.manifest = read_manifest(self.path)
        self.symbols = read_symbols(self.path)

    def __len__(self) -> int:
        return len(self.rows)

    def __repr__(self) -> str:
        counts = {s: len(self.ids(s)) for s in SPLITS}
        return (
            f"Corpus({str(self.path)!r}, clips={len(self)}, speakers={len(self.speakers)}, splits={counts})"
        )

    def ids(self, split: str | None = None) -> list[str]:
        if split is not None and split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
        return [r.id for r in self.rows if split is None or self.split_of[r.id] == split]

    def speaker_id(self, clip_id: str) -> int:
        return self.speaker_ids[self.by_id[clip_id].speaker]

    def wav_path(self, clip_id: str) -> Path:
        return self.path / "wavs" / f"{clip_id}.wav"

    @property
    def n_symbols(self) -> int:
        """Size of the manifest's symbol table (the acoustic model's embedding count)."""
        if self.symbols is None:
            raise CorpusError(f"{self.path / 'symbols.json'}: not found; run `parawave data manifest`")
        return len(self.symbols["symbols"])

    def require_manifest(self) -> dict[str, dict]:
        if self.manifest is None:
            raise CorpusError(f"{self.path / 'phonemes.jsonl'}: not found; run `parawave data manifest`")
        return self.manifest
