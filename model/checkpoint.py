"""Checkpoint files: what every trainer writes and inference, export and evaluation read.

A checkpoint is a plain dict of tensors and builtins (``torch.load(weights_only=True)`` loads it),
never pickled modules: ``{"format", "kind", "step", "model", "ema", "optimizer", "scheduler",
"scaler", "config": {"model", "train", "audio", "data", ...}, "versions", "metrics"}``, written
atomically (:func:`save_checkpoint`). ``kind`` is "acoustic", "teacher" or "student"
(:func:`check_kind`); ``config`` rebuilds the dataclass configs (:func:`config_sections_from_checkpoint`)
and the model (:func:`model_from_checkpoint`, which ``teacher_from_checkpoint``,
``student_from_checkpoint`` and ``acoustic_from_checkpoint`` bind to their kind).

:class:`UserError` is the user-facing error of the offline tools (a missing or foreign checkpoint,
a bad ``--set``): one line, exit status 2. Imports only torch: the trainers' machinery
(``model.train``) is not needed to read a checkpoint.
"""

from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

__all__ = [
    "CHECKPOINT_FORMAT",
    "KIND_NOUNS",
    "UserError",
    "check_kind",
    "config_sections_from_checkpoint",
    "cpu_state",
    "load_checkpoint",
    "model_from_checkpoint",
    "save_checkpoint",
    "versions",
]

CHECKPOINT_FORMAT = 1
KIND_NOUNS = {"acoustic": "an acoustic model", "teacher": "a teacher", "student": "a student"}


class UserError(Exception):
    """Bad input from the command line (missing corpus or checkpoint, bad --set, ...): one-line message, exit 2."""


def versions() -> dict[str, str | None]:
    """Provenance recorded in every checkpoint (plain strings: weights_only-loadable)."""
    try:
        from importlib.metadata import version

        pkg = version("parawave")
    except Exception:
        pkg = None
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except Exception:
        commit = ""
    return {
        "parawave": pkg,
        "git": commit or None,
        "torch": str(torch.__version__),
        "python": platform.python_version(),
        "cuda": str(torch.version.cuda) if torch.version.cuda else None,
    }


def cpu_state(state: dict) -> dict:
    return {k: (v.detach().cpu() if isinstance(v, Tensor) else v) for k, v in state.items()}


def save_checkpoint(path: str | os.PathLike, checkpoint: dict) -> None:
    """Atomic ``torch.save``: temp file in the same folder, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(checkpoint, tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint dict from the file alone (``weights_only=True``: no code runs)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise UserError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(ckpt, dict) or "kind" not in ckpt or "config" not in ckpt:
        raise UserError(f"{path}: not a parawave checkpoint")
    return ckpt


def check_kind(ckpt: dict, kind: str, where: object, noun: str | None = None) -> dict:
    """``ckpt`` when it holds a ``kind`` model, else UserError naming ``where`` (its path, or e.g.
    ``--init PATH``) and what was expected (``noun``, default from :data:`KIND_NOUNS`)."""
    found = ckpt.get("kind")
    if found != kind:
        noun = noun or KIND_NOUNS.get(kind, f"a {kind} model")
        raise UserError(f"{where} holds a {found!r} model, not {noun} (expected {kind!r})")
    return ckpt


def config_sections_from_checkpoint(ckpt: dict, classes: dict[str, type]) -> dict[str, Any]:
    """Rebuild the saved dataclass configs ({"model": cls, ...}) of a checkpoint."""
    out = {}
    for name, cls in classes.items():
        saved = ckpt["config"].get(name)
        if saved is None:
            raise UserError(f"checkpoint has no {name!r} config")
        if hasattr(cls, "from_dict"):
            out[name] = cls.from_dict(saved)
        else:
            out[name] = cls(**{k: v for k, v in saved.items() if k in {f.name for f in fields(cls)}})
    return out


def model_from_checkpoint(
    ckpt: dict, kind: str, config_cls: type, model_cls: type, *, ema: bool = True, for_inference: bool = True
) -> nn.Module:
    """The one way to build a model of ``kind`` from a checkpoint dict (see the module's docstring):
    ``model_cls(config_cls.from_dict(config["model"]))`` with the EMA weights by default (the
    training weights with ``ema=False`` or when it has none). ``for_inference`` folds weight
    normalisation (a no-op for a model without it) and switches to eval mode. ValueError when the
    checkpoint holds another kind (:func:`check_kind` gives the command line's UserError first)."""
    found = ckpt.get("kind")
    if found != kind:
        raise ValueError(f"checkpoint holds a {found!r} model, not {KIND_NOUNS.get(kind, f'a {kind} model')}")
    model = model_cls(config_cls.from_dict(ckpt["config"]["model"]))
    weights = ckpt.get("ema") if ema and ckpt.get("ema") else ckpt["model"]
    model.load_state_dict(weights)
    if for_inference:
        from model.wavenet import remove_weight_norm

        remove_weight_norm(model)
        model.eval()
    return model
