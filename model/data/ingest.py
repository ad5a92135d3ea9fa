"""Validate an LJSpeech-format corpus folder and report every problem instead of dying on the first.

Layout (see docs/design.md, "Corpus"): ``metadata.csv`` with ``id|text|normalized text[|speaker]`` lines,
``wavs/<id>.wav``, optional ``splits.csv`` with ``id|split`` lines. ``validate_corpus`` returns an
``IngestReport``: a list of ``Problem`` (where, kind, message, severity) plus speaker/split summaries.
Severity "error" means training on the folder as-is would be wrong or would fail; "warning" means
worth a look (orphan wavs, unusually long clips, ...). The parsers here are shared with the renderer.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
ERROR = "error"
WARNING = "warning"


@dataclass(frozen=True)
class Problem:
    where: str  # clip id, or "metadata.csv:<line>" / "splits.csv:<line>" / a file name
    kind: str  # machine-readable tag, e.g. "missing_wav", "field_count", "clipped_audio"
    message: str
    severity: str = ERROR  # ERROR | WARNING


@dataclass(frozen=True)
class Row:
    """One parsed metadata.csv line."""

    id: str
    text: str
    normalized: str
    speaker: str | None  # None: 3-column line (single-speaker corpus)
    line: int  # 1-based line number in metadata.csv


@dataclass(frozen=True)
class IngestOptions:
    sample_rate: int = 16_000  # expected rate; anything else is an error
    min_seconds: float = 0.5  # shorter clips: warning
    max_seconds: float = 20.0  # longer clips: warning
    silence_dbfs: float = -60.0  # RMS below this (dB re full scale): near-silent, error
    clip_level: float = 0.999  # |x| at or above this counts as a full-scale sample
    max_clip_fraction: float = 0.001  # more full-scale samples than this fraction: clipped, error
    jobs: int = 4  # threads reading wavs
    pitch: bool = False  # track F0 (Praat) per clip: report coverage, flag clips where tracking fails
    min_voiced: float = 0.05  # fewer voiced frames than this fraction: pitch tracking failed, warning


@dataclass
class SpeakerSummary:
    clips: int = 0
    seconds: float = 0.0


@dataclass
class IngestReport:
    corpus: str
    options: IngestOptions
    clips: int = 0  # rows in metadata.csv that parsed
    valid_clips: int = 0  # of those, clips with no error
    seconds: float = 0.0  # total audio over readable clips
    sample_rates: dict[int, int] = field(default_factory=dict)  # rate -> clips
    speakers: dict[str, SpeakerSummary] = field(default_factory=dict)
    splits_source: str = "hash"  # "splits.csv", or "hash" (derived from the id when loading)
    splits: dict[str, int] = field(default_factory=dict)  # split -> clips (only with splits.csv)
    orphans: int = 0
    pitch_frames: int = 0  # with options.pitch: frames tracked over readable clips ...
    pitch_voiced: int = 0  # ... and how many of them are voiced
    problems: list[Problem] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == ERROR]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == WARNING]

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict:
        d = asdict(self)
        d["sample_rates"] = {str(k): v for k, v in self.sample_rates.items()}
        d["ok"] = self.ok
        d["n_errors"] = len(self.errors)
        d["n_warnings"] = len(self.warnings)
        return d


# --------------------------------------------------------------------------------------- parsing


def _lines(path: Path) -> Iterable[tuple[int, str | None]]:
    """(line number, decoded line or None when it is not UTF-8) for each non-blank line."""
    for i, raw in enumerate(path.read_bytes().split(b"\n"), start=1):
        raw = raw.rstrip(b"\r")
        if not raw.strip():
            continue
        try:
            yield i, raw.decode("utf-8")
        except UnicodeDecodeError:
            yield i, None


def bad_id_reason(clip_id: str) -> str | None:
    """Why ``clip_id`` cannot name a file under wavs/, or None when it can."""
    if clip_id in (".", "..") or clip_id.startswith("."):
        return "id may not start with '.'"
    if any(c in clip_id for c in "/\\\0"):
        return "id may not contain '/', '\\' or NUL"
    if clip_id != clip_id.strip():
        return "id has leading/trailing whitespace"
    return None


def parse_metadata(path: str | os.PathLike) -> tuple[list[Row], list[Problem]]:
    """Parse metadata.csv. Malformed lines are reported (by line number) and left out of the rows."""
    path = Path(path)
    name = path.name
    rows: list[Row] = []
    problems: list[Problem] = []
    first_line: dict[str, int] = {}
    for i, line in _lines(path):
        where = f"{name}:{i}"
        if line is None:
            problems.append(Problem(where, "encoding", "line is not valid UTF-8"))
            continue
        fields = line.split("|")
        if len(fields) not in (2, 3, 4):
            problems.append(
                Problem(
                    where,
                    "field_count",
                    f"expected 3 or 4 '|'-separated fields (id|text|normalized[|speaker]), got {len(fields)}",
                )
            )
            continue
        clip_id, text = fields[0], fields[1]
        normalized = fields[2] if len(fields) > 2 else ""
        speaker = fields[3].strip() if len(fields) == 4 else None
        empty = [n for n, v in (("id", clip_id), ("text", text)) if not v.strip()]
        if empty:
            problems.append(Problem(where, "empty_field", f"empty {', '.join(empty)}"))
            continue
        if not normalized.strip():  # the loaders fall back to the text column
            problems.append(
                Problem(where, "no_normalized_text", "no normalized text; the text column is used", WARNING)
            )
            normalized = text
        if speaker == "":
            problems.append(
                Problem(where, "empty_speaker", "empty speaker; the folder's name is used", WARNING)
            )
            speaker = None
        reason = bad_id_reason(clip_id)
        if reason:
            problems.append(Problem(where, "bad_id", f"{clip_id!r}: {reason}"))
            continue
        if clip_id in first_line:
            problems.append(
                Problem(where, "duplicate_id", f"id {clip_id!r} already used on line {first_line[clip_id]}")
            )
            continue
        first_line[clip_id] = i
        rows.append(Row(clip_id, text, normalized, speaker, i))
    n4 = sum(r.speaker is not None for r in rows)
    if 0 < n4 < len(rows):
        problems.append(
            Problem(
                name,
                "mixed_columns",
                f"{n4} of {len(rows)} lines have a speaker column; the others get the folder's name",
                WARNING,
            )
        )
    return rows, problems


def parse_splits(path: str | os.PathLike) -> tuple[dict[str, str], list[Problem]]:
    """Parse splits.csv (``id|split``) -> ({id: split}, problems)."""
    path = Path(path)
    name = path.name
    splits: dict[str, str] = {}
    first_line: dict[str, int] = {}
    problems: list[Problem] = []
    for i, line in _lines(path):
        where = f"{name}:{i}"
        if line is None:
            problems.append(Problem(where, "encoding", "line is not valid UTF-8"))
            continue
        fields = [f.strip() for f in line.split("|")]
        if len(fields) != 2 or not all(fields):
            problems.append(Problem(where, "splits_malformed", "expected 'id|split' with both fields set"))
            continue
        clip_id, split = fields
        if split not in SPLITS:
            problems.append(
                Problem(where, "unknown_split", f"split {split!r} is not one of {', '.join(SPLITS)}")
            )
            continue
        if clip_id in first_line:
            problems.append(
                Problem(where, "duplicate_id", f"id {clip_id!r} already listed on line {first_line[clip_id]}")
            )
            continue
        first_line[clip_id] = i
        splits[clip_id] = split
    return splits, problems


# ----------------------------------------------------------------------------------------- audio


@dataclass
class _ClipResult:
    seconds: float | None = None  # None: unreadable
    sample_rate: int | None = None
    frames: int = 0  # F0 frames tracked (options.pitch)
    voiced: int = 0
    problems: list[tuple[str, str, str]] = field(default_factory=list)  # (kind, message, severity)


def check_clip(path: Path, opt: IngestOptions) -> _ClipResult:
    """Read one wav and look for problems. Never raises for a bad file."""
    from model.data.audio import load_wav

    res = _ClipResult()
    if not path.is_file():
        res.problems.append(("missing_wav", f"{path.parent.name}/{path.name} not found", ERROR))
        return res
    try:
        size = path.stat().st_size
    except OSError as exc:
        res.problems.append(("unreadable_wav", f"cannot stat: {exc}", ERROR))
        return res
    if size == 0:
        res.problems.append(("empty_audio", "0-byte file", ERROR))
        return res
    try:
        audio, sr = load_wav(path, mono=False)  # (T, C)
    except Exception as exc:  # any decoder error is a property of the file, not of the run
        res.problems.append(("unreadable_wav", f"cannot read: {type(exc).__name__}: {exc}".strip(), ERROR))
        return res
    res.sample_rate = sr
    n, channels = audio.shape
    res.seconds = n / sr if sr > 0 else 0.0
    if sr != opt.sample_rate:
        res.problems.append(("sample_rate", f"{sr} Hz, expected {opt.sample_rate} Hz", ERROR))
    if channels != 1:
        res.problems.append(("multichannel", f"{channels} channels; loaders mix them to mono", WARNING))
    if n == 0:
        res.problems.append(("empty_audio", "no samples", ERROR))
        return res
    if not np.all(np.isfinite(audio)):
        res.problems.append(("nonfinite_audio", "contains NaN or infinite samples", ERROR))
        return res
    mono = audio.mean(axis=1) if channels > 1 else audio[:, 0]  # (T,)
    rms = float(np.sqrt(np.mean(np.square(mono, dtype=np.float64))))
    rms_db = 20.0 * math.log10(rms) if rms > 0 else -math.inf
    if rms_db < opt.silence_dbfs:
        level = "all zeros" if rms == 0 else f"RMS {rms_db:.1f} dBFS"
        res.problems.append(
            ("silent_audio", f"near-silent ({level}, threshold {opt.silence_dbfs:g} dBFS)", ERROR)
        )
    clipped = float(np.mean(np.abs(audio) >= opt.clip_level))
    if clipped > opt.max_clip_fraction:
        res.problems.append(
            (
                "clipped_audio",
                f"{clipped:.2%} of samples at full scale (limit {opt.max_clip_fraction:.2%})",
                ERROR,
            )
        )
    if opt.pitch and rms_db >= opt.silence_dbfs:
        from model.data.config import AudioConfig
        from model.data.pitch import track_f0

        f0 = track_f0(mono, AudioConfig(sample_rate=sr, fmax=min(8000.0, sr / 2)))  # (F,) at the clip's rate
        res.frames, res.voiced = int(f0.shape[0]), int((f0 > 0).sum())
        if res.frames and res.voiced < opt.min_voiced * res.frames:
            res.problems.append(
                (
                    "pitch_untracked",
                    f"pitch tracking found {res.voiced} voiced frames of {res.frames} "
                    f"(< {opt.min_voiced:.0%}): no periodic speech to train the excitation on",
                    WARNING,
                )
            )
    if res.seconds < opt.min_seconds:
        res.problems.append(("too_short", f"{res.seconds:.2f} s < {opt.min_seconds:g} s", WARNING))
    if res.seconds > opt.max_seconds:
        res.problems.append(("too_long", f"{res.seconds:.2f} s > {opt.max_seconds:g} s", WARNING))
    return res


# ---------------------------------------------------------------------------------------- corpus


def validate_corpus(
    corpus: str | os.PathLike,
    options: IngestOptions | None = None,
    progress: Callable[[int], None] | None = None,
) -> IngestReport:
    """Check a corpus folder. ``progress(n)`` is called as clips finish (for a progress bar)."""
    opt = options or IngestOptions()
    root = Path(corpus)
    report = IngestReport(corpus=str(root), options=opt)
    problems = report.problems
    meta_path = root / "metadata.csv"
    if not meta_path.is_file():
        problems.append(Problem("metadata.csv", "missing_metadata", f"{meta_path} not found"))
        return report
    try:
        rows, meta_problems = parse_metadata(meta_path)
    except OSError as exc:
        problems.append(Problem("metadata.csv", "missing_metadata", f"cannot read {meta_path}: {exc}"))
        return report
    problems.extend(meta_problems)
    report.clips = len(rows)
    if not rows:
        problems.append(Problem("metadata.csv", "no_clips", "no valid lines"))

    wav_dir = root / "wavs"
    default_speaker = root.resolve().name
    with ThreadPoolExecutor(max_workers=max(1, opt.jobs)) as pool:
        results = pool.map(lambda r: check_clip(wav_dir / f"{r.id}.wav", opt), rows)
        for row, res in zip(rows, results, strict=True):
            clip_problems = [Problem(row.id, k, m, s) for k, m, s in res.problems]
            problems.extend(clip_problems)
            if not any(p.severity == ERROR for p in clip_problems):
                report.valid_clips += 1
            if res.seconds is not None:
                report.seconds += res.seconds
                report.sample_rates[res.sample_rate] = report.sample_rates.get(res.sample_rate, 0) + 1
                spk = report.speakers.setdefault(row.speaker or default_speaker, SpeakerSummary())
                spk.clips += 1
                spk.seconds += res.seconds
                report.pitch_frames += res.frames
                report.pitch_voiced += res.voiced
            if progress is not None:
                progress(1)

    ids = {r.id for r in rows}
    if wav_dir.is_dir():
        orphans = sorted(p.stem for p in wav_dir.glob("*.wav") if p.stem not in ids)
        report.orphans = len(orphans)
        problems.extend(
            Problem(o, "orphan_wav", f"wavs/{o}.wav is not listed in metadata.csv", WARNING) for o in orphans
        )
    elif rows:
        problems.append(Problem("wavs", "missing_wavs_dir", f"{wav_dir} is not a folder"))

    splits_path = root / "splits.csv"
    if splits_path.is_file():
        report.splits_source = "splits.csv"
        splits, split_problems = parse_splits(splits_path)
        problems.extend(split_problems)
        for clip_id in sorted(set(splits) - ids):
            problems.append(
                Problem(clip_id, "split_unknown_id", "in splits.csv but not in metadata.csv", WARNING)
            )
        for row in rows:
            split = splits.get(row.id)
            if split is None:  # the loader puts unlisted clips in train
                problems.append(
                    Problem(row.id, "split_missing", "not in splits.csv (counted as train)", WARNING)
                )
                split = "train"
            report.splits[split] = report.splits.get(split, 0) + 1
    else:
        report.splits_source = "hash"
        report.splits = _hash_splits(rows, default_speaker)
    return report


def _hash_splits(rows: list[Row], default_speaker: str) -> dict[str, int]:
    """Split counts the loader will derive from the ids (empty if the loader is not installed)."""
    try:
        from model.data.corpus import MetadataRow, hash_split, split_key
    except ImportError:
        return {}
    counts: dict[str, int] = {}
    for r in rows:
        split = hash_split(split_key(MetadataRow(r.id, r.text, r.normalized, r.speaker or default_speaker)))
        counts[split] = counts.get(split, 0) + 1
    return counts


def format_report(report: IngestReport) -> str:
    """Human-readable report: one line per problem, then the summary."""
    out = [f"{p.severity.upper():7s} {p.where}: {p.kind}: {p.message}" for p in report.problems]
    hours = report.seconds / 3600
    out.append(
        f"corpus {report.corpus}: {report.clips} clips, {report.valid_clips} valid, "
        f"{hours:.3f} h ({report.seconds:.1f} s)"
    )
    if report.sample_rates:
        rates = ", ".join(f"{sr} Hz x {n}" for sr, n in sorted(report.sample_rates.items()))
        out.append(f"sample rates: {rates} (expected {report.options.sample_rate} Hz)")
    for name, spk in sorted(report.speakers.items()):
        out.append(f"speaker {name}: {spk.clips} clips, {spk.seconds / 3600:.3f} h")
    parts = ", ".join(f"{s} {report.splits.get(s, 0)}" for s in SPLITS)
    if report.splits_source == "splits.csv":
        out.append(f"splits (splits.csv): {parts}")
    elif report.splits:
        out.append(f"splits (no splits.csv; derived from a hash of each id): {parts}")
    else:
        out.append("splits: no splits.csv; derived from a hash of each id when loaded")
    if report.orphans:
        out.append(f"orphan wavs (not in metadata.csv): {report.orphans}")
    if report.options.pitch:
        flagged = sum(p.kind == "pitch_untracked" for p in report.problems)
        share = report.pitch_voiced / report.pitch_frames if report.pitch_frames else 0.0
        out.append(
            f"pitch (Praat): {share:.1%} of {report.pitch_frames} frames voiced; "
            f"{flagged} clips where tracking found < {report.options.min_voiced:.0%} voiced"
        )
    verdict = "VALID" if report.ok else "INVALID"
    out.append(f"{len(report.errors)} errors, {len(report.warnings)} warnings: {verdict}")
    return "\n".join(out)
