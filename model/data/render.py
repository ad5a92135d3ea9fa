"""Render ``id|text`` lines with flite into an LJSpeech-format corpus folder.

Output (see docs/design.md, "Corpus")::

    <out>/metadata.csv       id|text|normalized text            (one voice)
                             <voice>_<id>|text|normalized|voice  (several voices)
    <out>/wavs/<id>.wav      16 kHz mono PCM16
    <out>/splits.csv         id|split, when a text file is named train/val/test.txt or --split is given
    <out>/durations/<id>.txt flite's phone end times, "phone:seconds" per line (--durations)
    <out>/render.json        voices, id scheme, rate and normalizer of the renders in this folder

What flite speaks is *our* normalized text (``model.text.normalize``), not the raw line. The
acoustic model learns phonemes of our normalization; if flite expanded "1835" or "$19.99" its own
way ("eighteen thirty five") while the labels said "one thousand eight hundred thirty-five", the
aligner would be trained on audio that does not say its transcript. Fed already-spoken words,
flite's own normalizer has nothing left to expand and only adds phrasing at the punctuation we keep.
flite reads ASCII only, so accents are folded first ("Müller" -> "Muller", see ``model.data.flite``).
A line may carry its own normalized text in a third field (``id|text|normalized``, e.g. an existing
metadata.csv); that is used as is. Where ``model.text`` cannot be imported (the GPU host lacks
num2words/phonemizer) the normalized text already recorded in ``<out>/metadata.csv`` for the clip is
reused, so a folder prepared here with ``--metadata-only`` renders exactly its manifest's words there.

Robustness: each wav is written to a hidden temp file and renamed into place, so an interrupted run
never leaves a partial wav; a rerun skips clips whose wav is valid (16 kHz mono, non-empty, text
unchanged) and rewrites metadata.csv/splits.csv merged with the rows already there. A line that
fails is reported and the others continue.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import types
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from model.data.flite import (
    ClipError,
    RenderError,
    atomic_write_text,
    find_flite,
    flite_text,
    render_clip,
    resolve_voices,
    wav_is_done,
)
from model.data.ingest import SPLITS, Row, bad_id_reason, parse_metadata, parse_splits

log = logging.getLogger(__name__)

STATE_FILE = "render.json"


@dataclass(frozen=True)
class SourceLine:
    id: str
    text: str
    normalized: str | None  # given in the text file (3rd field), else None
    split: str | None
    where: str  # "<file>:<line>"


@dataclass(frozen=True)
class Clip:
    id: str  # output id: the source id, or <voice>_<source id> in multi-voice folders
    source_id: str
    voice: str
    text: str
    normalized: str
    speaker: str | None  # the voice in multi-voice folders, None (3-column metadata) otherwise
    split: str | None


@dataclass(frozen=True)
class Failure:
    where: str  # clip id or "<file>:<line>"
    message: str


@dataclass
class RenderResult:
    out: Path
    clips: int = 0  # clips planned in this run
    rendered: int = 0
    skipped: int = 0  # already rendered and valid
    failures: list[Failure] = field(default_factory=list)
    normalizer: str = ""
    seconds: float = 0.0  # wall time

    @property
    def ok(self) -> bool:
        return not self.failures


# ------------------------------------------------------------------------------------ inputs


def read_text_file(path: str | os.PathLike, split: str | None = None, limit: int | None = None):
    """Lines of an ``id|text`` (or ``id|text|normalized``) file -> (list[SourceLine], list[Failure]).

    The split is ``split`` when given, else the file's stem when that is train/val/test, else None.
    ``limit`` keeps the first N good lines.
    """
    path = Path(path)
    if split is None and path.stem in SPLITS:
        split = path.stem
    lines: list[SourceLine] = []
    failures: list[Failure] = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for i, raw in enumerate(f, start=1):
            if limit is not None and len(lines) >= limit:
                break
            raw = raw.rstrip("\r\n")
            if not raw.strip():
                continue
            where = f"{path.name}:{i}"
            fields = raw.split("|")
            if len(fields) not in (2, 3):
                failures.append(
                    Failure(where, f"expected 'id|text' or 'id|text|normalized', got {len(fields)} fields")
                )
                continue
            clip_id, text = fields[0].strip(), " ".join(fields[1].split())
            given = " ".join(fields[2].split()) if len(fields) == 3 else ""
            if not clip_id or not text:
                failures.append(Failure(where, "empty id or text"))
                continue
            reason = bad_id_reason(clip_id)
            if reason:
                failures.append(Failure(where, f"{clip_id!r}: {reason}"))
                continue
            lines.append(SourceLine(clip_id, text, given or None, split, where))
    return lines, failures


def parse_voices(values: Iterable[str]) -> list[str]:
    """``["rms", "slt,awb"]`` -> ``["rms", "slt", "awb"]`` (order kept, duplicates dropped)."""
    voices: list[str] = []
    for value in values:
        for v in value.split(","):
            v = v.strip()
            if v and v not in voices:
                voices.append(v)
    return voices


def get_normalizer() -> tuple[Callable[[str], str] | None, str]:
    """(model.text.normalize, "model.text"), or (None, reason) when it cannot be imported."""
    try:
        from model.text import normalize
    except ImportError as exc:
        return None, f"unavailable ({exc})"
    if isinstance(normalize, types.ModuleType):  # model/text/__init__.py does not re-export it (yet)
        normalize = getattr(normalize, "normalize", None)
    if not callable(normalize):
        return None, "unavailable (model.text.normalize is not a function)"
    return normalize, "model.text"


# ------------------------------------------------------------------------------- the folder


def _read_state(out: Path) -> dict | None:
    path = out / STATE_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RenderError(f"{path}: unreadable ({exc}); remove it or use a new --out") from None


def _plan_state(out: Path, voices: Sequence[str], sample_rate: int) -> tuple[bool, dict]:
    """(prefixed ids?, new state). Refuses mixes that would give two voices the same clip ids."""
    state = _read_state(out)
    if state is None:
        return len(voices) > 1, {
            "voices": list(voices),
            "prefixed": len(voices) > 1,
            "sample_rate": sample_rate,
        }
    old_voices = list(state.get("voices", []))
    prefixed = bool(state.get("prefixed")) or len(voices) > 1
    if int(state.get("sample_rate", sample_rate)) != sample_rate:
        raise RenderError(
            f"{out} holds {state['sample_rate']} Hz renders, not {sample_rate} Hz; use a new --out"
        )
    if not state.get("prefixed") and old_voices and list(voices) != old_voices:
        raise RenderError(
            f"{out} holds single-voice {'/'.join(old_voices)} clips with unprefixed ids; "
            f"render {'/'.join(voices)} into a new --out (or all voices together)"
        )
    merged = old_voices + [v for v in voices if v not in old_voices]
    return prefixed, {"voices": merged, "prefixed": prefixed, "sample_rate": sample_rate}


def _write_table(path: Path, lines: Iterable[str]) -> None:
    atomic_write_text(path, "".join(f"{line}\n" for line in lines))


def _write_tables(
    out: Path,
    existing: list[Row],
    existing_splits: dict[str, str],
    clips: list[Clip],
    done: set[str],
    metadata_only: bool,
) -> tuple[int, int]:
    """Rewrite metadata.csv and splits.csv: old rows kept in order, this run's clips replacing or
    appended; a clip of this run that has no valid wav is left out (unless metadata-only).
    Returns (rows, split rows) written."""
    run = {c.id: c for c in clips}
    keep = {c.id for c in clips if metadata_only or c.id in done}
    rows: dict[str, tuple[str, str, str | None]] = {}
    for r in existing:
        if r.id not in run:
            rows[r.id] = (r.text, r.normalized, r.speaker)
    for c in clips:
        if c.id in keep:
            rows[c.id] = (c.text, c.normalized, c.speaker)
    order = [r.id for r in existing if r.id in rows] + [c.id for c in clips if c.id in keep]
    order = list(dict.fromkeys(order))  # existing rows first (their order), new ones appended
    lines = []
    for cid in order:
        text, normalized, speaker = rows[cid]
        lines.append("|".join([cid, text, normalized] + ([speaker] if speaker else [])))
    _write_table(out / "metadata.csv", lines)

    splits = {cid: s for cid, s in existing_splits.items() if cid in rows}
    for c in clips:
        if c.id in keep and c.split is not None:
            splits[c.id] = c.split
    if splits:
        _write_table(out / "splits.csv", [f"{cid}|{splits[cid]}" for cid in order if cid in splits])
    return len(lines), len(splits)


def render_corpus(
    texts: Sequence[str | os.PathLike],
    voices: Sequence[str],
    out: str | os.PathLike,
    jobs: int | None = None,
    limit: int | None = None,
    metadata_only: bool = False,
    durations: bool = False,
    split: str | None = None,
    sample_rate: int = 16_000,
    flite: str = "flite",
    progress: bool = True,
) -> RenderResult:
    """Render every line of ``texts`` with every voice into the corpus folder ``out``.

    Raises RenderError for problems with the whole run; per-line problems are collected in
    ``result.failures`` and the other lines continue.
    """
    t0 = time.perf_counter()
    out = Path(out)
    if split is not None and split not in SPLITS:
        raise RenderError(f"--split must be one of {', '.join(SPLITS)}, got {split!r}")
    if metadata_only and durations:
        raise RenderError("--durations needs audio; it cannot be combined with --metadata-only")
    voice_names = parse_voices(voices)
    if not voice_names:
        raise RenderError("no voice given")
    for t in texts:
        if not Path(t).is_file():
            raise RenderError(f"text file {t} not found")
    flite_path: str | None = None
    if not metadata_only:
        flite_path = find_flite(flite)
    elif shutil.which(flite):  # check voice names when we can, but metadata needs no flite
        flite_path = shutil.which(flite)
    voice_args = resolve_voices(voice_names, flite_path)
    if metadata_only:
        flite_path = None

    result = RenderResult(out=out)
    sources: list[SourceLine] = []
    seen: dict[str, str] = {}
    for t in texts:
        lines, failures = read_text_file(t, split=split, limit=limit)
        result.failures.extend(failures)
        for line in lines:
            if line.id in seen:
                result.failures.append(
                    Failure(line.where, f"duplicate id {line.id!r} (first at {seen[line.id]})")
                )
                continue
            seen[line.id] = line.where
            sources.append(line)

    out.mkdir(parents=True, exist_ok=True)
    prefixed, state = _plan_state(out, list(voice_args), sample_rate)
    existing: list[Row] = []
    if (out / "metadata.csv").is_file():
        existing, problems = parse_metadata(out / "metadata.csv")
        bad = [p for p in problems if p.severity == "error"]
        if bad:
            log.warning(
                "%s: %d malformed lines are dropped on rewrite (first: %s)", out, len(bad), bad[0].message
            )
    existing_by_id = {r.id: r for r in existing}
    existing_splits: dict[str, str] = {}
    if (out / "splits.csv").is_file():
        existing_splits, _ = parse_splits(out / "splits.csv")

    # Normalize each source line once (shared by the voices).
    normalize, result.normalizer = get_normalizer()
    if normalize is None:
        log.warning(
            "model.text.normalize %s: reusing normalized text from metadata.csv, else the text as is",
            result.normalizer,
        )
        result.normalizer = "metadata.csv or text as written"
    state["normalizer"] = result.normalizer
    clips: list[Clip] = []
    for line in sources:
        ids = {v: (f"{v}_{line.id}" if prefixed else line.id) for v in voice_args}
        normalized = line.normalized
        if normalized is None and normalize is not None:
            try:
                normalized = " ".join(normalize(line.text).split())
            except Exception as exc:  # the normalizer's bug must not stop the other lines
                result.failures.append(Failure(line.where, f"normalize failed: {type(exc).__name__}: {exc}"))
                continue
        if normalized is None:
            old = [existing_by_id[i] for i in ids.values() if i in existing_by_id]
            old = [r for r in old if r.text == line.text]
            normalized = old[0].normalized if old else line.text
        normalized = flite_text(normalized)
        if not normalized or "|" in normalized:
            result.failures.append(Failure(line.where, f"unusable normalized text {normalized!r}"))
            continue
        for v, cid in ids.items():
            clips.append(Clip(cid, line.id, v, line.text, normalized, v if prefixed else None, line.split))
    # voice-major order: all clips of the first voice, then the next
    clips.sort(key=lambda c: list(voice_args).index(c.voice))
    result.clips = len(clips)

    atomic_write_text(out / STATE_FILE, json.dumps(state, indent=2) + "\n")
    wav_dir = out / "wavs"
    dur_dir = out / "durations"
    done: set[str] = set()
    todo: list[Clip] = []
    for c in clips:  # a clip whose words changed: its audio is wrong, also for --metadata-only
        old = existing_by_id.get(c.id)
        if old is not None and old.normalized != c.normalized:
            (wav_dir / f"{c.id}.wav").unlink(missing_ok=True)
            (dur_dir / f"{c.id}.txt").unlink(missing_ok=True)
    if not metadata_only:
        wav_dir.mkdir(exist_ok=True)
        if durations:
            dur_dir.mkdir(exist_ok=True)
        for d in (wav_dir, dur_dir):  # temp files of a killed run
            for tmp in d.glob(".*.tmp") if d.is_dir() else ():
                tmp.unlink(missing_ok=True)
        for c in clips:
            wav = wav_dir / f"{c.id}.wav"
            has_dur = not durations or (dur_dir / f"{c.id}.txt").is_file()
            if has_dur and wav_is_done(wav, sample_rate):
                done.add(c.id)
            else:
                wav.unlink(missing_ok=True)  # broken: never trusted by a later resume
                todo.append(c)
        result.skipped = len(done)

    try:
        if todo:
            _render_all(
                todo,
                voice_args,
                wav_dir,
                dur_dir if durations else None,
                flite_path,
                sample_rate,
                jobs,
                progress,
                done,
                result,
            )
    finally:  # also on Ctrl-C: record what is on disk so far
        n_rows, n_splits = _write_tables(out, existing, existing_splits, clips, done, metadata_only)
        log.info("%s: metadata.csv %d rows, splits.csv %d rows", out, n_rows, n_splits)
    result.seconds = time.perf_counter() - t0
    return result


def _render_all(
    todo: list[Clip],
    voice_args: dict[str, str],
    wav_dir: Path,
    dur_dir: Path | None,
    flite: str,
    sample_rate: int,
    jobs: int | None,
    progress: bool,
    done: set[str],
    result: RenderResult,
) -> None:
    from tqdm import tqdm

    jobs = max(1, jobs or os.cpu_count() or 1)
    bar = tqdm(total=len(todo), unit="clip", desc=f"render {wav_dir.parent.name}", disable=not progress)
    # Threads suffice: each job waits on a flite subprocess, the GIL is free meanwhile.
    pool = ThreadPoolExecutor(max_workers=jobs)
    try:
        futures: dict[Future, Clip] = {
            pool.submit(
                render_clip,
                c.normalized,
                voice_args[c.voice],
                wav_dir / f"{c.id}.wav",
                flite,
                sample_rate,
                dur_dir / f"{c.id}.txt" if dur_dir is not None else None,
            ): c
            for c in todo
        }
        for fut in as_completed(futures):
            clip = futures[fut]
            try:
                fut.result()
            except Exception as exc:  # one bad line must not stop the others
                msg = str(exc) if isinstance(exc, ClipError) else f"{type(exc).__name__}: {exc}"
                result.failures.append(Failure(clip.id, msg))
                log.debug("%s failed: %s", clip.id, msg)
            else:
                done.add(clip.id)
                result.rendered += 1
            bar.update(1)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
