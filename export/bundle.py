"""Write a voice bundle ``voices/<name>/`` from PyTorch models or checkpoints.

A bundle needs the acoustic model (text -> mel) and at least one vocoder: the student, the teacher,
or both. Speakers and the symbol table come from the acoustic checkpoint (what the corpus had); a
vocoder trained on several speakers must list the same speakers in the same order, a
single-speaker vocoder is speaker independent and fits any acoustic model. Audio parameters
(sample rate, hop, mel bins) must agree across all three.

Every graph is parity-checked against its PyTorch model right after export (``export.parity``);
the errors go into ``provenance.parity``. The folder is written to a temporary sibling and renamed
into place, so a failed export never leaves half a bundle behind.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from export import onnx as onnx_export
from export import parity
from service import __version__
from service.bundle import AudioParams, InferenceParams, Provenance, VoiceBundle, file_entry

log = logging.getLogger(__name__)


class ExportError(Exception):
    """A user-facing problem (bad or inconsistent checkpoints): one line, exit code 2."""


@dataclass
class ModelSource:
    """A model to export plus what the bundle records about it."""

    model: nn.Module
    step: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    checkpoint: str = ""
    speakers: list[str] | None = None  # the vocoder's training speakers (None: unknown)
    corpus: str = ""


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            cwd=Path(__file__).parent,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _number_metrics(metrics: Any) -> dict[str, float]:
    if not isinstance(metrics, dict):
        return {}
    return {
        str(k): float(v) for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)
    }


def check_consistency(
    audio: dict[str, Any], speakers: list[str], acoustic: nn.Module, vocoders: dict[str, ModelSource]
) -> None:
    if acoustic.cfg.n_speakers != len(speakers):
        raise ExportError(
            f"the acoustic model has {acoustic.cfg.n_speakers} speakers but {len(speakers)} names"
        )
    if acoustic.cfg.n_mels != audio["n_mels"]:
        raise ExportError(f"acoustic n_mels {acoustic.cfg.n_mels} != audio config n_mels {audio['n_mels']}")
    for role, src in vocoders.items():
        cfg = src.model.cfg
        for key in ("sample_rate", "hop_length", "n_mels"):
            if getattr(cfg, key) != audio[key]:
                raise ExportError(f"{role}: {key} {getattr(cfg, key)} != the acoustic model's {audio[key]}")
        wrong = cfg.n_speakers != len(speakers) or (
            src.speakers is not None and list(src.speakers) != list(speakers)
        )
        if cfg.n_speakers > 1 and wrong:
            raise ExportError(
                f"{role}: trained on speakers {src.speakers or cfg.n_speakers}, the acoustic model on "
                f"{speakers}; a multi-speaker vocoder must have the same speakers in the same order"
            )


def student_context(student: nn.Module) -> tuple[int, int]:
    """Mel frames (left, right) around a frame that the student's audio for it depends on
    (``StudentConfig.context_frames``: conditioning look-around, upsampler neighbour, receptive field)."""
    left, right = student.cfg.context_frames
    return int(left), int(right)


def write_bundle(
    out_dir: str | os.PathLike,
    name: str,
    *,
    audio: dict[str, Any],
    symbols: dict[str, Any],
    speakers: list[str],
    acoustic: ModelSource,
    student: ModelSource | None = None,
    teacher: ModelSource | None = None,
    fp16: bool = False,
    corpus: str = "",
    date: str | None = None,
    git_commit: str | None = "auto",
    check: bool = True,
    overwrite: bool = False,
    inference: InferenceParams | None = None,
) -> tuple[Path, VoiceBundle, list[parity.Parity]]:
    """Export, parity-check and write ``out_dir/name``. Returns (folder, manifest, parity results).

    ``audio``: an AudioConfig dict; ``fp16``: also write a float16 student (for CUDA; the acoustic
    model stays fp32: its integer durations come from rounding); ``date``/``git_commit`` fixed values make the output reproducible.
    """
    if student is None and teacher is None:
        raise ExportError("nothing to vocode with: give a student and/or a teacher")
    if not name or Path(name).name != name or name.startswith("."):
        raise ExportError(f"voice name {name!r} must be a plain folder name")
    inference = inference or InferenceParams()
    if problem := inference.problem():
        raise ExportError(problem)
    vocoders = {k: v for k, v in (("student", student), ("teacher", teacher)) if v is not None}
    check_consistency(audio, speakers, acoustic.model, vocoders)
    final = Path(out_dir) / name
    if final.exists() and not overwrite:
        raise ExportError(f"{final} exists (pass --overwrite to replace it)")
    tmp = final.with_name(f".{name}.export-tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        files, results = _write_graphs(tmp, acoustic, student, teacher, fp16, check)
        provenance = Provenance(
            corpus=corpus or acoustic.corpus,
            steps={role: int(src.step) for role, src in (("acoustic", acoustic), *vocoders.items())},
            metrics={
                role: _number_metrics(src.metrics)
                for role, src in (("acoustic", acoustic), *vocoders.items())
            },
            git_commit=_git_commit() if git_commit == "auto" else git_commit,
            date=date or dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            parawave=__version__,
            checkpoints={
                role: src.checkpoint
                for role, src in (("acoustic", acoustic), *vocoders.items())
                if src.checkpoint
            },
            parity={r.graph: float(f"{r.max_abs:.3g}") for r in results},
        )
        context = {}
        if student is not None:
            context["student"] = student_context(student.model)
        manifest = VoiceBundle(
            name=name,
            sample_rate=int(audio["sample_rate"]),
            audio=AudioParams(**{k: audio[k] for k in AudioParams.__dataclass_fields__ if k in audio}),
            symbols=symbols,
            speakers=tuple(speakers),
            files=files,
            provenance=provenance,
            context=context,
            inference=inference,
        )
        manifest.save(tmp)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final, manifest, results


def _write_graphs(folder: Path, acoustic, student, teacher, fp16: bool, check: bool):
    files = {}
    results: list[parity.Parity] = []

    def put(role: str, model, precision: str = "fp32") -> None:
        fname = f"{role}.onnx"
        onnx_export.save(model, folder / fname)
        files[role] = file_entry(folder, fname, precision)
        log.info("wrote %s (%.1f kB)", fname, files[role].bytes / 1000)

    a = onnx_export.export_acoustic(acoustic.model)
    if check:
        results.append(parity.acoustic_parity(onnx_export.prepare(acoustic.model), a))
    put("acoustic", a)
    if student is not None:
        model = onnx_export.prepare(student.model)
        s = onnx_export.export_student(model)
        if check:
            results.append(parity.student_parity(model, s))
        put("student", s)
        if fp16:
            s16 = onnx_export.to_fp16(s)
            if check:
                results.append(parity.student_parity(model, s16, precision="fp16"))
            put("student_fp16", s16, "fp16")
    if teacher is not None:
        model = onnx_export.prepare(teacher.model)
        cond = onnx_export.export_teacher_cond(model)
        step = onnx_export.export_teacher_step(model)
        block = onnx_export.export_teacher_block(model, step)
        if check:
            results.append(parity.teacher_cond_parity(model, cond))
            results.append(parity.teacher_block_parity(model, block))
        put("teacher_cond", cond)
        put("teacher_block", block)
    return files, results


# -------------------------------------------------------------------------------- from checkpoints


def _load(path: Path, kind: str) -> dict:
    from model.checkpoint import UserError, check_kind, load_checkpoint

    try:
        return check_kind(load_checkpoint(path), kind, path)
    except UserError as exc:
        raise ExportError(str(exc)) from None


def _source(ckpt: dict, model: nn.Module, path: Path) -> ModelSource:
    data = ckpt.get("config", {}).get("data", {}) or {}
    return ModelSource(
        model=model,
        step=int(ckpt.get("step", 0)),
        metrics=_number_metrics(ckpt.get("metrics")),
        checkpoint=str(path),
        speakers=list(data["speakers"]) if "speakers" in data else None,
        corpus=str(data.get("corpus", "")),
    )


def bundle_from_checkpoints(
    out_dir: str | os.PathLike,
    name: str,
    *,
    acoustic: Path,
    student: Path | None = None,
    teacher: Path | None = None,
    fp16: bool = False,
    overwrite: bool = False,
    teacher_temperature: float = 1.0,
    hd_model: str = "teacher",
) -> tuple[Path, VoiceBundle, list[parity.Parity]]:
    from model.acoustic import acoustic_from_checkpoint
    from model.student import student_from_checkpoint
    from model.teacher import teacher_from_checkpoint

    a_ckpt = _load(acoustic, "acoustic")
    data = a_ckpt["config"].get("data", {})
    if "speakers" not in data or "symbols" not in data:
        raise ExportError(f"{acoustic}: the checkpoint has no speakers/symbols (config.data)")
    a_src = _source(a_ckpt, acoustic_from_checkpoint(a_ckpt), acoustic)
    s_src = t_src = None
    if student is not None:
        ckpt = _load(student, "student")
        s_src = _source(ckpt, student_from_checkpoint(ckpt), student)
    if teacher is not None:
        ckpt = _load(teacher, "teacher")
        t_src = _source(ckpt, teacher_from_checkpoint(ckpt), teacher)
    return write_bundle(
        out_dir,
        name,
        audio=dict(a_ckpt["config"]["audio"]),
        symbols=dict(data["symbols"]),
        speakers=list(data["speakers"]),
        acoustic=a_src,
        student=s_src,
        teacher=t_src,
        fp16=fp16,
        corpus=str(data.get("corpus", "")),
        overwrite=overwrite,
        inference=InferenceParams(teacher_temperature=float(teacher_temperature), hd_model=hd_model),
    )
