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
flite reads ASCII only, so accents are folded first ("Müller" -> "Muller", see ``flite_text``).
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
import subprocess
import time
import types
import unicodedata
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from model.data.ingest import SPLITS, Row, bad_id_reason, parse_metadata, parse_splits

log = logging.getLogger(__name__)

FLITE_TIMEOUT_S = 120.0
STATE_FILE = "render.json"


class RenderError(Exception):
    """A problem with the whole run (flite missing, unknown voice, conflicting folder)."""


class ClipError(Exception):
    """One clip failed to render."""


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


def find_flite(flite: str = "flite") -> str:
    """Path of the flite executable, or RenderError with a one-line explanation."""
    found = shutil.which(flite)
    if found is None:
        raise RenderError(
            f"flite not found ({flite!r} is not an executable on PATH); install it, e.g. `apt-get install flite`"
        )
    return found


def flite_voices(flite: str) -> set[str]:
    """Voice names compiled into flite (``flite -lv``)."""
    out = subprocess.run([flite, "-lv"], capture_output=True, text=True, timeout=30)
    text = out.stdout + out.stderr
    _, sep, names = text.partition("Voices available:")
    if not sep:
        raise RenderError(f"cannot list flite voices: `{flite} -lv` printed {text.strip()!r}")
    return set(names.split())


def resolve_voices(voices: Sequence[str], flite: str | None) -> dict[str, str]:
    """{voice name: flite -voice argument}. A .flitevox path is named after its stem.

    flite silently falls back to its default voice for a name it does not know, so names are
    checked against ``flite -lv`` (when ``flite`` is None, only their form is checked).
    """
    known = flite_voices(flite) if flite else None
    out: dict[str, str] = {}
    for v in voices:
        if v.endswith(".flitevox"):
            if not Path(v).is_file():
                raise RenderError(f"voice file {v} not found")
            name = Path(v).name.removesuffix(".flitevox")
        else:
            name = v
            if known is not None and v not in known:
                raise RenderError(f"unknown flite voice {v!r}; available: {', '.join(sorted(known))}")
        if bad_id_reason(name) or "|" in name:
            raise RenderError(f"voice name {name!r} cannot prefix clip ids (no '|', '/', leading '.')")
        out[name] = v
    return out


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


# ----------------------------------------------------------------------------------- one clip


def flite_text(text: str) -> str:
    """What flite can read: ASCII. Accents are folded ("Müller" -> "Muller"), other non-ASCII
    characters dropped. flite mangles UTF-8 ("Müller" comes out as "eh m l er"), and the
    metadata must hold exactly what was spoken, so the folded text is what gets recorded."""
    decomposed = unicodedata.normalize("NFKD", text)
    ascii_only = "".join(c for c in decomposed if not unicodedata.combining(c)).encode("ascii", "ignore")
    return " ".join(ascii_only.decode("ascii").split())


def parse_psdur(stdout: str) -> list[tuple[str, float]]:
    """``flite -psdur`` output ("pau:0.119 hh:0.212 ...") -> [(phone, end time in s)]."""
    phones = []
    for token in stdout.split():
        phone, sep, end = token.rpartition(":")
        try:
            t = float(end)
        except ValueError:
            t = None
        if not sep or not phone or t is None:
            raise ClipError(f"unexpected flite -psdur output {token!r}")
        phones.append((phone, t))
    return phones


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def render_clip(
    text: str,
    voice_arg: str,
    wav_path: Path,
    flite: str,
    sample_rate: int = 16_000,
    durations_path: Path | None = None,
) -> float:
    """Speak ``text`` with flite into ``wav_path`` (atomically); returns the clip length in seconds.

    One flite call gives both the wav (``-o``) and, with ``durations_path``, the phone end times
    (``-psdur`` on stdout). Output at another rate than ``sample_rate`` is resampled.
    """
    from model.data.audio import load_wav, save_wav, wav_info

    tmp = wav_path.with_name(f".{wav_path.name}.{uuid.uuid4().hex[:12]}.tmp")
    cmd = [flite, "-voice", voice_arg]
    if durations_path is not None:
        cmd.append("-psdur")
    cmd += ["-t", text, "-o", str(tmp)]
    try:
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=FLITE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise ClipError(f"flite took longer than {FLITE_TIMEOUT_S:g} s") from None
        err = proc.stderr.strip().splitlines()
        if proc.returncode != 0:
            raise ClipError(f"flite exited with status {proc.returncode}: {err[-1] if err else ''}".strip())
        if not tmp.is_file():
            raise ClipError(f"flite wrote no wav: {err[-1] if err else 'no message'}")
        try:
            sr, frames, channels = wav_info(tmp)
        except Exception as exc:
            raise ClipError(f"flite wrote an unreadable wav ({exc})") from None
        if frames == 0:
            raise ClipError("flite wrote an empty wav")
        if sr != sample_rate or channels != 1:
            from math import gcd

            from scipy.signal import resample_poly

            audio, sr = load_wav(tmp)  # (T,)
            g = gcd(sr, sample_rate)
            save_wav(tmp, resample_poly(audio, sample_rate // g, sr // g), sample_rate)
            frames = wav_info(tmp)[1]
        if durations_path is not None:
            phones = parse_psdur(proc.stdout)
            if not phones:
                raise ClipError("flite -psdur printed no phone timings")
            _atomic_write_text(durations_path, "".join(f"{p}:{t:.3f}\n" for p, t in phones))
        os.replace(tmp, wav_path)  # the wav appears last: it marks the clip as done
        return frames / sample_rate
    finally:
        tmp.unlink(missing_ok=True)


def wav_is_done(wav_path: Path, sample_rate: int) -> bool:
    """True when ``wav_path`` is a readable, non-empty mono wav at ``sample_rate``."""
    from model.data.audio import wav_info

    try:
        sr, frames, channels = wav_info(wav_path)
    except Exception:
        return False
    return sr == sample_rate and frames > 0 and channels == 1


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
    _atomic_write_text(path, "".join(f"{line}\n" for line in lines))


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

    _atomic_write_text(out / STATE_FILE, json.dumps(state, indent=2) + "\n")
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
