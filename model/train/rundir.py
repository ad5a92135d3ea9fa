"""The run directory: ``<run>/checkpoints/{last,best}.pt``, ``<run>/tb/`` (TensorBoard),
``<run>/config.json``, ``<run>/train.log``; ``--resume`` against what is there."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from model.checkpoint import UserError, load_checkpoint

log = logging.getLogger(__name__)


class RunDir:
    """``<run>/checkpoints/last.pt``, ``best.pt``, ``<run>/tb/``, ``<run>/config.json``, ``<run>/train.log``."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.checkpoints = self.path / "checkpoints"
        self.last = self.checkpoints / "last.pt"
        self.best = self.checkpoints / "best.pt"
        self.tb = self.path / "tb"
        self.config = self.path / "config.json"
        self.log_file = self.path / "train.log"

    def create(self) -> RunDir:
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        self.tb.mkdir(parents=True, exist_ok=True)
        return self


def prepare_run(out: str | os.PathLike, resume: bool) -> tuple[RunDir, dict | None]:
    """Check the run directory against ``--resume``: the checkpoint to resume from, or None.

    Without ``--resume`` an existing ``last.pt`` is an error (no silent overwrite); with it and no
    checkpoint yet, training starts fresh (handy for chunked GPU sessions).
    """
    run = RunDir(out)
    if run.last.exists():
        if not resume:
            raise UserError(f"{run.last} exists: pass --resume to continue it, or choose another --out")
        return run, load_checkpoint(run.last)
    if resume:
        log.warning("--resume: no checkpoint in %s yet, starting fresh", run.checkpoints)
    return run, None


def setup_file_logging(run: RunDir) -> logging.Handler:
    handler = logging.FileHandler(run.log_file)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger("model").addHandler(handler)
    if logging.getLogger("model").level == logging.NOTSET:
        logging.getLogger("model").setLevel(logging.INFO)
    return handler
