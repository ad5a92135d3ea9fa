"""flite itself: finding the executable, its voices, what text it can read, and one clip spoken
into a wav (with flite's phone end times, ``-psdur``). :mod:`model.data.render` drives it over a
whole corpus folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import unicodedata
import uuid
from collections.abc import Sequence
from pathlib import Path

from model.data.ingest import bad_id_reason

FLITE_TIMEOUT_S = 120.0


class RenderError(Exception):
    """A problem with the whole run (flite missing, unknown voice, conflicting folder)."""


class ClipError(Exception):
    """One clip failed to render."""


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


def atomic_write_text(path: Path, text: str) -> None:
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
            atomic_write_text(durations_path, "".join(f"{p}:{t:.3f}\n" for p, t in phones))
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
