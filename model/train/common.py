"""Training infrastructure shared by every trainer (teacher, student, acoustic model).

A trainer supplies a :class:`TrainTask` (model, data, loss, validation, samples) and a
:class:`TrainConfig` (or a frozen subclass with its own fields) and calls :func:`run_training`,
which owns everything else:

- run directory: ``<run>/checkpoints/{last,best}.pt``, ``<run>/tb/`` (TensorBoard),
  ``<run>/config.json`` (readable copy of the configuration), ``<run>/train.log``;
- checkpoints: plain dicts of tensors and builtins (``torch.load(weights_only=True)`` loads them),
  never pickled modules: ``{"format", "kind", "step", "model", "ema", "optimizer", "scheduler",
  "scaler", "config": {"model", "train", "audio", "data", ...}, "versions", "metrics"}``; written
  atomically every ``checkpoint_minutes``, at the end, and on exit (Ctrl-C, SIGTERM);
  ``--resume`` continues from ``last.pt`` (model, EMA, optimizer, schedule, step);
- Adam with linear warm-up then cosine decay, gradient clipping, EMA (Polyak) weights used for
  validation, samples and best.pt;
- precision: fp32 on CPU; on CUDA bf16 autocast by default (``precision``: bf16 | fp16 | fp32,
  fp16 with a GradScaler), TF32 matmuls for fp32 parts;
- TensorBoard scalars, audio and figures (through the task), a tqdm bar with loss and steps/s;
- ``--max-steps`` (stop at this global step) and ``--max-minutes`` (stop after this much training
  in this invocation) so GPU sessions train in chunks and resume;
- DDP when launched by ``torchrun`` (WORLD_SIZE > 1): one code path, rank 0 logs and saves.

The pieces live in their own modules: ``model.checkpoint`` (checkpoint files, :class:`UserError`),
``model.train.config`` (TrainConfig, TrainArgs, ``--set`` overrides), ``rundir``, ``optim`` (EMA,
Adam, schedule, autocast), ``loaders``, ``samples`` (TensorBoard figures/audio), ``distributed``
(device, DDP) and ``loop`` (TrainTask, the SIGTERM flag, :func:`run_training`). This module
re-exports them for the trainers.

Imports only torch, numpy, tqdm (and tensorboard/matplotlib lazily): it runs on the GPU host.
"""

from __future__ import annotations

from model.checkpoint import (
    CHECKPOINT_FORMAT,
    UserError,
    config_sections_from_checkpoint,
    cpu_state,
    load_checkpoint,
    save_checkpoint,
    versions,
)
from model.train.config import (
    VOCODER_AUDIO_FIELDS,
    TrainArgs,
    TrainConfig,
    apply_overrides,
    check_resume_overrides,
    preset_sections,
    reject_model_audio_sets,
    resumed_sections,
)
from model.train.distributed import resolve_device
from model.train.loaders import infinite_batches, make_loader, pick_eval_split, to_device
from model.train.loop import TrainTask, run_training, summary_table
from model.train.optim import EMA, autocast_context, lr_factor, make_optimizer, make_scheduler
from model.train.rundir import RunDir, prepare_run
from model.train.samples import log_vocoder_sample, plot_mels

__all__ = [
    "CHECKPOINT_FORMAT",
    "EMA",
    "VOCODER_AUDIO_FIELDS",
    "RunDir",
    "TrainArgs",
    "TrainConfig",
    "TrainTask",
    "UserError",
    "apply_overrides",
    "autocast_context",
    "check_resume_overrides",
    "config_sections_from_checkpoint",
    "cpu_state",
    "infinite_batches",
    "load_checkpoint",
    "log_vocoder_sample",
    "lr_factor",
    "make_loader",
    "make_optimizer",
    "make_scheduler",
    "pick_eval_split",
    "plot_mels",
    "prepare_run",
    "preset_sections",
    "reject_model_audio_sets",
    "resolve_device",
    "resumed_sections",
    "run_training",
    "save_checkpoint",
    "summary_table",
    "to_device",
    "versions",
]
