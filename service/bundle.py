"""The voice bundle: ``voices/<name>/voice.json`` + the ONNX graphs it lists (torch-free).

One typed dataclass, :class:`VoiceBundle`, is both what ``parawave export`` writes
(``export/bundle.py`` builds one and calls :meth:`VoiceBundle.save`) and what the engine reads
(:func:`load`). ``voice.json``::

    {
      "format_version": 2,
      "name": "ljs3",
      "sample_rate": 16000,
      "audio": {sample_rate, n_fft, hop_length, win_length, n_mels, fmin, fmax, log_floor},
      "symbols": {...},                      # model.text.SymbolTable.to_dict()
      "speakers": ["rms", "slt", "awb"],      # index = the models' speaker id; first = default
      "files": {"acoustic": {"path": "acoustic.onnx", "sha256": "...", "precision": "fp32",
                             "bytes": 123456}, "student": {...}, "student_fp16": {...},
                "teacher_cond": {...}, "teacher_block": {...}},
      "context": {"student": [12, 3]},        # frames of mel a vocoder output depends on, before/after
      "inference": {"teacher_temperature": 0.7, "hd_model": "student"},  # chosen at export (optional)
      "provenance": {"corpus": "...", "steps": {"acoustic": 40000, ...}, "metrics": {...},
                     "git_commit": "...", "date": "2026-...Z", "parawave": "0.1.0",
                     "checkpoints": {...}, "parity": {"student": 3e-7, ...}}
    }

Roles (see :mod:`service.graphs`): ``acoustic`` is required, plus at least one vocoder: the
``student`` and/or the teacher pair ``teacher_cond`` + ``teacher_block``. ``<role>_fp16`` files are
optional variants for the CUDA provider.

:func:`load` checks the format version, the fields, that every file is a plain name inside the
bundle folder, and every file's sha256, and raises :class:`~service.types.EngineLoadError` with
one line naming the bundle and what is wrong.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from service import graphs
from service.types import EngineLoadError

# 2: the acoustic graph takes pitch and gives f0; the student takes the excitation
# 3: the graphs take speaker_weights (B, S) instead of speaker ids (B,): voice blending
FORMAT_VERSION = 3
READABLE_VERSIONS = (2, 3)  # format 2 still loads (speaker ids; no blending): see service.graphs.LEGACY_SPECS
MANIFEST = "voice.json"
PRECISIONS = ("fp32", "fp16")
TEACHER_ROLES = ("teacher_cond", "teacher_block")
MAX_TEMPERATURE = 2.0
HD_MODELS = ("teacher", "student")


@dataclass(frozen=True)
class AudioParams:
    """The mel front end the models were trained on (mirrors ``model.data.config.AudioConfig``,
    which the runtime does not import)."""

    sample_rate: int = 16_000
    n_fft: int = 1024
    hop_length: int = 200
    win_length: int = 800
    n_mels: int = 80
    fmin: float = 0.0
    fmax: float = 8000.0
    log_floor: float = 1e-5


@dataclass(frozen=True)
class BundleFile:
    path: str  # file name inside the bundle folder
    sha256: str
    precision: str = "fp32"
    bytes: int = 0


@dataclass(frozen=True)
class InferenceParams:
    """Sampling defaults measured for this voice at export (Piper keeps its noise scales in the
    voice's JSON the same way); ``Settings`` can override them per deployment."""

    # the teacher samples x_t = mean + temperature * scale * N(0, 1); below 1 trades variety for a
    # cleaner, more periodic waveform (an undertrained Gaussian WaveNet is noisy at 1)
    teacher_temperature: float = 1.0
    # the model OpenAI's `tts-1-hd` asks for on this voice: the teacher (the Parallel WaveNet
    # premise: the reference is the best) unless the export measured the student better
    hd_model: str = "teacher"

    def problem(self) -> str | None:
        if self.hd_model not in HD_MODELS:
            return f"inference.hd_model must be one of {list(HD_MODELS)}, got {self.hd_model!r}"
        t = self.teacher_temperature
        if isinstance(t, bool) or not (isinstance(t, (int, float)) and 0.0 < t <= MAX_TEMPERATURE):
            return f"inference.teacher_temperature must be in (0, {MAX_TEMPERATURE:g}], got {t!r}"
        return None


@dataclass(frozen=True)
class Provenance:
    corpus: str = ""
    steps: dict[str, int] = field(default_factory=dict)  # role -> training steps
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # role -> validation metrics
    git_commit: str | None = None
    date: str = ""  # ISO 8601, UTC
    parawave: str = ""
    checkpoints: dict[str, str] = field(default_factory=dict)  # role -> checkpoint file exported
    parity: dict[str, float] = field(default_factory=dict)  # graph -> max |ONNX - PyTorch| at export


@dataclass(frozen=True)
class VoiceBundle:
    name: str
    sample_rate: int
    audio: AudioParams
    symbols: dict[str, Any]
    speakers: tuple[str, ...]
    files: dict[str, BundleFile]
    provenance: Provenance = field(default_factory=Provenance)
    # role -> [left, right]: mel frames before/after a frame that its audio depends on (receptive
    # field + conditioning look-ahead); lets the engine vocode long utterances in exact pieces
    context: dict[str, tuple[int, int]] = field(default_factory=dict)
    inference: InferenceParams = field(default_factory=InferenceParams)
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        problem = self.problem()
        if problem:
            raise ValueError(problem)

    def problem(self) -> str | None:
        """What makes this bundle unusable (None when it is fine)."""
        if self.format_version not in READABLE_VERSIONS:
            return (
                f"format version {self.format_version} (this parawave reads versions {READABLE_VERSIONS}; "
                "re-export the voice with `parawave export voice`)"
            )
        if self.sample_rate != self.audio.sample_rate:
            return f"sample_rate {self.sample_rate} differs from audio.sample_rate {self.audio.sample_rate}"
        if self.sample_rate <= 0 or self.audio.hop_length <= 0:
            return "sample rate and hop length must be positive"
        if not self.speakers or len(set(self.speakers)) != len(self.speakers):
            return f"speakers must be a non-empty list of distinct names, got {list(self.speakers)}"
        if "acoustic" not in self.files:
            return "no acoustic model (files.acoustic)"
        has_teacher = [r in self.files for r in TEACHER_ROLES]
        if any(has_teacher) and not all(has_teacher):
            return "the teacher needs both teacher_cond and teacher_block"
        if "student" not in self.files and not all(has_teacher):
            return "no vocoder: ship the student and/or the teacher (teacher_cond + teacher_block)"
        inference_problem = self.inference.problem()
        if inference_problem:
            return inference_problem
        for role, ctx in self.context.items():
            if len(ctx) != 2 or min(ctx) < 0:
                return f"context.{role} must be [left, right] frames >= 0, got {list(ctx)}"
        for role, f in self.files.items():
            if graphs.base_role(role) not in graphs.ROLES:
                return f"file {role}: unknown role (expected one of {graphs.ROLES}, optionally _fp16)"
            if f.precision not in PRECISIONS:
                return f"file {role}: precision {f.precision!r} not in {PRECISIONS}"
            name = Path(f.path)
            if name.name != f.path or f.path in ("", ".", "..") or f.path == MANIFEST:
                return f"file {role}: path {f.path!r} must be a plain file name inside the bundle"
            if len(f.sha256) != 64:
                return f"file {role}: sha256 must be 64 hex digits"
        return None

    @property
    def models(self) -> tuple[str, ...]:
        """The vocoders this bundle ships ("student", "teacher")."""
        out = []
        if "student" in self.files:
            out.append("student")
        if all(r in self.files for r in TEACHER_ROLES):
            out.append("teacher")
        return tuple(out)

    # -- (de)serialisation ---------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["speakers"] = list(self.speakers)
        d["context"] = {k: list(v) for k, v in self.context.items()}
        order = ["format_version", "name", "sample_rate", "audio", "symbols", "speakers", "files", "context"]
        order += ["inference", "provenance"]
        return {k: d[k] for k in order}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> VoiceBundle:
        """Parse voice.json's content; ValueError/TypeError/KeyError on a malformed one."""
        if not isinstance(d, dict):
            raise ValueError("voice.json must hold a JSON object")
        version = d.get("format_version")
        if version not in READABLE_VERSIONS or isinstance(version, bool):
            raise ValueError(
                f"format version {version!r} (this parawave reads versions {READABLE_VERSIONS}; "
                "re-export the voice with `parawave export voice`)"
            )
        _known(d, cls, "voice.json")
        files = d["files"]
        if not isinstance(files, dict):
            raise ValueError("files must be an object {role: {path, sha256, precision}}")
        return cls(
            name=str(d["name"]),
            sample_rate=int(d["sample_rate"]),
            audio=AudioParams(**_known(d["audio"], AudioParams, "audio")),
            symbols=dict(d["symbols"]),
            speakers=tuple(str(s) for s in d["speakers"]),
            files={str(r): BundleFile(**_known(f, BundleFile, f"files.{r}")) for r, f in files.items()},
            provenance=Provenance(**_known(d.get("provenance", {}), Provenance, "provenance")),
            context={str(k): (int(v[0]), int(v[1])) for k, v in dict(d.get("context", {})).items()},
            inference=InferenceParams(**_known(d.get("inference", {}), InferenceParams, "inference")),
            format_version=int(version),
        )

    def save(self, folder: str | os.PathLike) -> Path:
        """Write voice.json into ``folder`` (the ONNX files are expected there already)."""
        path = Path(folder) / MANIFEST
        tmp = path.with_name(f".{MANIFEST}.tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        os.replace(tmp, path)
        return path


def _known(d: Any, cls: type, where: str) -> dict[str, Any]:
    if not isinstance(d, dict):
        raise ValueError(f"{where} must be an object")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - names
    if unknown:
        raise ValueError(f"{where}: unknown fields {sorted(unknown)}")
    return d


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_entry(folder: str | os.PathLike, name: str, precision: str = "fp32") -> BundleFile:
    """The files entry of a file already written into the bundle folder."""
    path = Path(folder) / name
    return BundleFile(name, sha256_file(path), precision, path.stat().st_size)


def load(folder: str | os.PathLike, verify: bool = True) -> VoiceBundle:
    """Read and check ``folder/voice.json`` and (``verify``) every listed file's sha256.

    Raises EngineLoadError("<folder>: <reason>") on any problem.
    """
    folder = Path(folder)
    manifest = folder / MANIFEST
    where = str(folder)
    if not manifest.is_file():
        raise EngineLoadError(f"{where}: no {MANIFEST}")
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EngineLoadError(f"{where}: {MANIFEST} is not valid JSON ({exc})") from None
    try:
        bundle = VoiceBundle.from_dict(data)
    except (KeyError, TypeError, ValueError) as exc:
        what = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
        raise EngineLoadError(f"{where}: bad {MANIFEST}: {what}") from None
    if bundle.name != folder.name:
        raise EngineLoadError(
            f"{where}: {MANIFEST} names the voice {bundle.name!r}, the folder is {folder.name!r}"
        )
    for role, f in bundle.files.items():
        path = folder / f.path
        if not path.is_file():
            raise EngineLoadError(f"{where}: file {f.path} ({role}) is missing")
        if verify:
            digest = sha256_file(path)
            if digest != f.sha256:
                raise EngineLoadError(
                    f"{where}: file {f.path} ({role}) does not match its sha256 in {MANIFEST} "
                    f"(corrupted or modified; re-export the voice)"
                )
    return bundle
