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

Imports only torch, numpy, tqdm (and tensorboard/matplotlib lazily): it runs on the GPU host.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import logging
import math
import os
import platform
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

__all__ = [
    "CHECKPOINT_FORMAT",
    "EMA",
    "RunDir",
    "TrainArgs",
    "TrainConfig",
    "TrainTask",
    "UserError",
    "apply_overrides",
    "autocast_context",
    "infinite_batches",
    "load_checkpoint",
    "make_loader",
    "make_optimizer",
    "make_scheduler",
    "plot_mels",
    "resolve_device",
    "run_training",
    "save_checkpoint",
    "to_device",
    "versions",
]

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1


class UserError(Exception):
    """Bad input from the command line (missing corpus, bad --set, ...): one-line message, exit 2."""


# ------------------------------------------------------------------------------------ configuration


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation and bookkeeping settings every trainer shares. Subclass (frozen) to add fields."""

    steps: int = 100_000  # length of the LR schedule and the default stop
    batch_size: int = 8
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    warmup_steps: int = 1000
    decay: str = "cosine"  # cosine (to min_lr_ratio * lr at `steps`) | constant
    min_lr_ratio: float = 0.05
    grad_clip: float = 1.0  # max global grad norm (0 = off)
    ema_decay: float = 0.9999
    precision: str = "bf16"  # on CUDA: bf16 | fp16 | fp32; CPU runs fp32 whatever this says
    num_workers: int = 2
    threads: int = (
        0  # torch CPU threads when training on CPU (0 = torch's default); 1 is safest on busy hosts
    )
    seed: int = 1234
    log_every: int = 50  # steps between TensorBoard scalar writes
    val_every: int = 1000  # steps between validations (0 = only at the end)
    val_batches: int = 8
    sample_every: int = 5000  # steps between audio samples/figures (0 = only at the end, <0 = never)
    checkpoint_minutes: float = 10.0

    def __post_init__(self) -> None:
        if self.decay not in ("cosine", "constant"):
            raise ValueError(f"decay must be cosine or constant, got {self.decay!r}")
        if self.precision not in ("bf16", "fp16", "fp32"):
            raise ValueError(f"precision must be bf16, fp16 or fp32, got {self.precision!r}")
        if self.batch_size <= 0 or self.steps <= 0:
            raise ValueError("batch_size and steps must be positive")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict):
        known = {f.name for f in fields(cls)}
        kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in known}
        dropped = set(d) - known
        if dropped:
            log.warning("%s: ignoring unknown saved fields %s", cls.__name__, sorted(dropped))
        return cls(**kwargs)


@dataclass(frozen=True)
class TrainArgs:
    """The command line every trainer shares (see model.train.cli)."""

    data: Path
    out: Path
    preset: str = "cpu"
    sets: tuple[str, ...] = ()
    resume: bool = False
    max_steps: int | None = None
    max_minutes: float | None = None
    device: str | None = None
    teacher: Path | None = None  # the student's frozen teacher checkpoint
    extra: dict = field(default_factory=dict)


def _parse_value(raw: str, current: Any, key: str) -> Any:
    if isinstance(current, bool):
        low = raw.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise UserError(f"--set {key}: expected true/false, got {raw!r}")
    try:
        if isinstance(current, int):
            return int(raw)
        if isinstance(current, float):
            return float(raw)
        if isinstance(current, tuple):
            parts = [p for p in raw.replace("(", "").replace(")", "").split(",") if p.strip()]
            kind = type(current[0]) if current else str
            return tuple(kind(p.strip()) for p in parts)
    except ValueError:
        raise UserError(f"--set {key}: cannot parse {raw!r} as {type(current).__name__}") from None
    return raw


def apply_overrides(sections: dict[str, Any], sets: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """Apply ``--set key=value`` overrides to frozen dataclass configs.

    ``sections`` maps a name ("model", "train", "audio", ...) to a dataclass instance. Keys are
    ``section.field`` or a bare ``field`` found in exactly one section. Values are parsed by the
    type of the current value (bool, int, float, tuple as ``a,b``, str). Returns new sections.
    """
    out = dict(sections)
    for item in sets:
        if "=" not in item:
            raise UserError(f"--set expects key=value, got {item!r}")
        key, raw = item.split("=", 1)
        key = key.strip()
        if "." in key:
            section, name = key.split(".", 1)
            if section not in out:
                raise UserError(f"--set {key}: unknown section {section!r} (have {', '.join(out)})")
            candidates = [section] if name in {f.name for f in fields(out[section])} else []
        else:
            name = key
            candidates = [s for s, cfg in out.items() if name in {f.name for f in fields(cfg)}]
        if not candidates:
            raise UserError(f"--set {key}: no such setting")
        if len(candidates) > 1:
            raise UserError(
                f"--set {key}: ambiguous, use one of {', '.join(f'{s}.{name}' for s in candidates)}"
            )
        section = candidates[0]
        value = _parse_value(raw, getattr(out[section], name), key)
        try:
            out[section] = replace(out[section], **{name: value})
        except (ValueError, TypeError) as exc:
            raise UserError(f"--set {key}={raw}: {exc}") from None
    return out


VOCODER_AUDIO_FIELDS = (
    "sample_rate",
    "hop_length",
    "n_mels",
)  # a vocoder's model fields that follow the audio


def reject_model_audio_sets(sets: tuple[str, ...] | list[str]) -> None:
    """UserError on a ``--set model.<field>`` for a field of :data:`VOCODER_AUDIO_FIELDS`."""
    for item in sets:
        key = item.split("=", 1)[0].strip()
        if key in {f"model.{f}" for f in VOCODER_AUDIO_FIELDS}:
            raise UserError(
                f"--set {key}: set audio.{key.split('.', 1)[1]} instead (the model follows the audio config)"
            )


# ------------------------------------------------------------------------------------- run directory


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


def _cpu_state(state: dict) -> dict:
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


# -------------------------------------------------------------------------------- optimisation bits


class EMA:
    """Polyak averaging of a model's state: ``ema = d * ema + (1 - d) * param`` after each step.

    The effective decay ramps up as ``min(decay, (1 + step) / (10 + step))`` so short runs are not
    dominated by the initial weights. Buffers are copied. Shadow tensors are fp32.
    """

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.shadow = {k: v.detach().clone().float() for k, v in model.state_dict().items()}
        self._param_names = {name for name, _ in model.named_parameters()}

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        d = min(self.decay, (1.0 + step) / (10.0 + step))
        for name, value in model.state_dict().items():
            shadow = self.shadow[name]
            if name in self._param_names and value.is_floating_point():
                shadow.lerp_(value.detach().float(), 1.0 - d)
            else:
                shadow.copy_(value.detach())

    def state_dict(self) -> dict[str, Tensor]:
        return _cpu_state(self.shadow)

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        missing = set(self.shadow) - set(state)
        if missing:
            raise KeyError(f"EMA state lacks {sorted(missing)[:3]}")
        for k, v in state.items():
            if k in self.shadow:
                self.shadow[k].copy_(v)

    def copy_to(self, model: nn.Module) -> None:
        model.load_state_dict(self.shadow)


def make_optimizer(params, cfg: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up over ``warmup_steps``, then cosine decay to ``min_lr_ratio`` at ``steps`` (or constant)."""
    if cfg.warmup_steps > 0 and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.decay == "constant":
        return 1.0
    span = max(1, cfg.steps - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    return cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, cfg))


def resolve_device(name: str | None) -> torch.device:
    """``None``: cuda when available, else cpu. Under torchrun: the local rank's GPU."""
    if name is None:
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError("--device cuda: no CUDA device is available")
        if name == "cuda" and "LOCAL_RANK" in os.environ:
            name = f"cuda:{int(os.environ['LOCAL_RANK'])}"
    try:
        return torch.device(name)
    except RuntimeError as exc:
        raise UserError(f"--device {name}: {exc}") from None


def autocast_context(device: torch.device, precision: str):
    """bf16/fp16 autocast on CUDA; nothing (fp32) elsewhere or for precision fp32."""
    if device.type == "cuda" and precision in ("bf16", "fp16"):
        return torch.autocast(
            device_type="cuda", dtype=torch.bfloat16 if precision == "bf16" else torch.float16
        )
    return contextlib.nullcontext()


def to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor of a (nested) batch to ``device``."""
    if isinstance(batch, Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, list | tuple):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


# ------------------------------------------------------------------------------------------- data


def make_loader(
    dataset,
    batch_size: int,
    collate_fn: Callable,
    num_workers: int,
    seed: int,
    device: torch.device,
    shuffle: bool = True,
) -> torch.utils.data.DataLoader:
    """A training DataLoader: DistributedSampler under DDP, a (with-replacement when the dataset is
    smaller than a batch) random sampler otherwise; full batches only."""
    from torch.utils.data import DataLoader, DistributedSampler, RandomSampler

    if len(dataset) == 0:
        raise UserError("the training split is empty")
    generator = torch.Generator().manual_seed(seed)
    per_rank = len(dataset)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        sampler = DistributedSampler(dataset, shuffle=shuffle, seed=seed, drop_last=False)
        per_rank = len(sampler)
    elif len(dataset) < batch_size:
        sampler = RandomSampler(dataset, replacement=True, num_samples=batch_size * 64, generator=generator)
        per_rank = batch_size * 64
    else:
        sampler = RandomSampler(dataset, generator=generator) if shuffle else None
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        collate_fn=collate_fn,
        num_workers=num_workers,
        drop_last=per_rank >= batch_size,  # a tiny corpus under DDP gets partial batches rather than none
        pin_memory=device.type == "cuda",
        persistent_workers=num_workers > 0,
        worker_init_fn=_detach_worker if num_workers > 0 else None,
    )


def _detach_worker(_worker_id: int) -> None:
    """A DataLoader worker leaves its parent's process group: a Ctrl-C or a SIGTERM sent to the
    trainer's group (``kill -- -PGID``, a terminal, a supervisor) reaches the trainer alone, which
    finishes its step, saves and shuts its workers down itself; a worker killed under it would make
    it die in the loader instead. (Ignoring the signals in the worker is no fix: multiprocessing
    ends workers with SIGTERM at exit.)"""
    os.setpgrp()


def infinite_batches(loader: torch.utils.data.DataLoader) -> Iterator:
    """Endless batches, calling ``sampler.set_epoch`` each epoch (DDP shuffling)."""
    epoch = 0
    while True:
        sampler = loader.sampler
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        n = 0
        for batch in loader:
            n += 1
            yield batch
        if n == 0:
            raise UserError("the training data yields no batches")
        epoch += 1


def pick_eval_split(corpus, fallback: str) -> str:
    """The split to validate/sample on: "val", else "test", else "train" (warning that it validates
    on ``fallback``, e.g. "train clips")."""
    for split in ("val", "test"):
        if corpus.ids(split):
            return split
    log.warning("corpus has no val/test clips: validating on %s", fallback)
    return "train"


# ----------------------------------------------------------------------------------------- figures


def plot_mels(mels: dict[str, Any], title: str | None = None):
    """A matplotlib (Agg) figure with one log-mel image (n_mels, F) per entry, stacked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(len(mels), 1, figsize=(8, 2.2 * len(mels)), squeeze=False)
    for ax, (name, mel) in zip(axes[:, 0], mels.items(), strict=True):
        mel = mel.detach().float().cpu().numpy() if isinstance(mel, Tensor) else np.asarray(mel)
        im = ax.imshow(mel, origin="lower", aspect="auto", interpolation="none")
        ax.set_title(name, fontsize=9)
        fig.colorbar(im, ax=ax)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def log_vocoder_sample(
    model: nn.Module,
    writer,
    step: int,
    device: torch.device,
    *,
    corpus,
    split: str,
    audio_cfg,
    sample_seconds: float,
    temperature: float,
    audio_tag: str,
    label: str,
) -> None:
    """A vocoder's (teacher's or student's) TensorBoard sample: ``model.generate`` on the first
    ``sample_seconds`` of the first clip of ``split``, logged as audio ``sample/real`` and
    ``audio_tag``, and a figure ``sample/mel`` of the real mel and the generated one (``label``)."""
    import numpy as np

    from model.data.dataset import load_clip
    from model.data.features import log_mel

    clip_id = corpus.ids(split)[0]
    mel, audio = load_clip(corpus, clip_id, audio_cfg)  # (n_mels, F), (F*hop,)
    frames = max(1, min(mel.shape[1], round(sample_seconds * audio_cfg.frame_rate)))
    mel, audio = mel[:, :frames], audio[: frames * audio_cfg.hop_length]
    speaker = torch.tensor([corpus.speaker_id(clip_id)], device=device)
    extra = {}
    if getattr(getattr(model, "cfg", None), "excitation_channels", 0):  # pitch-excited vocoder
        from model.data.dataset import clip_excitation

        extra["excitation"] = clip_excitation(corpus, clip_id, audio_cfg, frames).to(device)
    generated = (
        model.generate(
            torch.from_numpy(mel)[None].to(device),
            speaker,
            temperature=temperature,
            seed=step,
            **extra,
        )[0]
        .float()
        .cpu()
    )  # (T,)
    sr = audio_cfg.sample_rate
    writer.add_audio("sample/real", torch.from_numpy(audio)[None], step, sample_rate=sr)
    writer.add_audio(audio_tag, generated[None], step, sample_rate=sr)
    gen_mel = log_mel(generated.numpy().astype(np.float32), audio_cfg)
    fig = plot_mels({f"real {clip_id}": mel, label: gen_mel}, title=f"step {step}")
    writer.add_figure("sample/mel", fig, step)


# -------------------------------------------------------------------------------------- the task


class TrainTask:
    """One model kind's part of training; :func:`run_training` does the rest.

    Set ``kind`` and ``model`` (the trainable nn.Module; its ``state_dict`` is what is saved) and
    implement :meth:`config_dict`, :meth:`train_batches` and :meth:`loss`; optionally
    :meth:`validate` (its "loss" selects best.pt) and :meth:`log_samples`.
    """

    kind: str = ""
    model: nn.Module

    def config_dict(self) -> dict:
        """Everything needed to rebuild the model and continue: {"model", "train", "audio", "data", ...}."""
        raise NotImplementedError

    def train_batches(self, device: torch.device) -> Iterator[dict]:
        """Endless training batches (CPU tensors are fine; they are moved to ``device``)."""
        raise NotImplementedError

    def loss(self, model: nn.Module, batch: dict) -> tuple[Tensor, dict[str, float | Tensor]]:
        """Scalar loss to minimise and metrics to log. ``model`` may be the DDP wrapper: call it, do
        not reach into ``.module``, so gradients are synchronised. Runs under autocast on CUDA."""
        raise NotImplementedError

    def validate(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        """Validation metrics with the EMA weights (no grad, eval mode). "loss" picks best.pt."""
        return {}

    def log_samples(self, model: nn.Module, writer, step: int, device: torch.device) -> None:
        """Audio samples / figures to TensorBoard with the EMA weights."""


def _distributed() -> tuple[int, int, bool]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return int(os.environ.get("RANK", "0")), world, world > 1


def _setup_distributed(device: torch.device) -> None:
    import torch.distributed as dist

    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")


class _StopFlag:
    """SIGTERM (and SIGINT handled as KeyboardInterrupt) -> finish the step, save, stop."""

    def __init__(self) -> None:
        self.reason: str | None = None
        self._previous = None

    def __enter__(self) -> _StopFlag:
        try:
            self._previous = signal.signal(signal.SIGTERM, self._handler)
        except ValueError:  # not the main thread
            self._previous = None
        return self

    def _handler(self, signum, frame) -> None:
        self.reason = "SIGTERM"

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


def _setup_file_logging(run: RunDir) -> logging.Handler:
    handler = logging.FileHandler(run.log_file)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger("model").addHandler(handler)
    if logging.getLogger("model").level == logging.NOTSET:
        logging.getLogger("model").setLevel(logging.INFO)
    return handler


def _scalar(v: float | Tensor) -> float:
    return float(v.detach().float().item()) if isinstance(v, Tensor) else float(v)


def run_training(
    task: TrainTask,
    cfg: TrainConfig,
    run: RunDir,
    *,
    device: torch.device,
    resume_from: dict | None = None,
    max_steps: int | None = None,
    max_minutes: float | None = None,
    progress: bool = True,
) -> dict:
    """Train ``task.model`` until ``max_steps`` (global; default ``cfg.steps``) or ``max_minutes`` of
    this invocation, a SIGTERM or Ctrl-C. Saves last.pt at the end in every case.

    Returns a summary: {"step", "start_step", "stopped" (reason), "last_loss", "history" [(step,
    loss)], "val" (last validation metrics), "best_val", "checkpoint", "seconds", "steps_per_s"}.
    """
    rank, world, distributed = _distributed()
    if distributed:
        _setup_distributed(device)
    torch.manual_seed(cfg.seed + rank)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True

    max_steps = cfg.steps if max_steps is None else max_steps
    previous_threads = torch.get_num_threads()
    if device.type == "cpu" and cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    try:
        return _train_loop(task, cfg, run, device, resume_from, max_steps, max_minutes, progress, rank, world)
    finally:
        torch.set_num_threads(previous_threads)


def _train_loop(task, cfg, run, device, resume_from, max_steps, max_minutes, progress, rank, world) -> dict:
    main = rank == 0
    distributed = world > 1
    model = task.model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(params, cfg)
    scheduler = make_scheduler(optimizer, cfg)
    use_scaler = device.type == "cuda" and cfg.precision == "fp16"
    scaler = torch.amp.GradScaler(device.type, enabled=use_scaler)
    ema = EMA(model, cfg.ema_decay)
    step = 0
    best_val = math.inf
    if resume_from is not None:
        model.load_state_dict(resume_from["model"])
        ema.load_state_dict(resume_from["ema"])
        optimizer.load_state_dict(resume_from["optimizer"])
        scheduler.load_state_dict(resume_from["scheduler"])
        if resume_from.get("scaler"):
            scaler.load_state_dict(resume_from["scaler"])
        step = int(resume_from["step"])
        best_val = float(resume_from.get("metrics", {}).get("best_val", math.inf))
        log.info("resumed %s from step %d", task.kind, step)
    start_step = step

    train_model: nn.Module = model
    if distributed:
        from torch.nn.parallel import DistributedDataParallel

        train_model = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )

    writer = None
    file_handler = None
    eval_model = None
    if main:
        run.create()
        file_handler = _setup_file_logging(run)
        run.config.write_text(json.dumps(task.config_dict(), indent=2, default=str) + "\n")
        try:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(str(run.tb), purge_step=step if step else None)
        except ImportError:
            log.warning("tensorboard is not installed: no TensorBoard logging")
        eval_model = copy.deepcopy(model).eval()
        for p in eval_model.parameters():
            p.requires_grad_(False)
        n_params = sum(p.numel() for p in model.parameters())
        log.info(
            "training %s (%.3fM parameters) on %s%s, precision %s, steps %d -> %d",
            task.kind,
            n_params / 1e6,
            device,
            f" x{world} (DDP)" if distributed else "",
            cfg.precision if device.type == "cuda" else "fp32",
            step,
            max_steps,
        )

    history: list[tuple[int, float]] = []
    last_val: dict[str, float] = {}
    metrics_state = {"best_val": best_val}
    t_start = time.monotonic()
    last_save = t_start
    train_seconds = float(resume_from.get("metrics", {}).get("train_seconds", 0.0)) if resume_from else 0.0

    def checkpoint(path: Path, val: dict | None = None) -> None:
        ckpt = {
            "format": CHECKPOINT_FORMAT,
            "kind": task.kind,
            "step": step,
            "model": _cpu_state(model.state_dict()),
            "ema": ema.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),
            "config": task.config_dict(),
            "versions": versions(),
            "metrics": {
                "best_val": metrics_state["best_val"],
                "val": dict(val or last_val),
                "train_seconds": train_seconds + (time.monotonic() - t_start),
                "last_loss": history[-1][1] if history else None,
            },
        }
        save_checkpoint(path, ckpt)
        log.info("saved %s (step %d)", path, step)

    def evaluate() -> None:
        nonlocal last_val
        ema.copy_to(eval_model)
        with torch.no_grad():
            last_val = {k: float(v) for k, v in task.validate(eval_model, device).items()}
        if writer is not None:
            for k, v in last_val.items():
                writer.add_scalar(f"val/{k}", v, step)
        if "loss" in last_val:
            log.info("step %d: val loss %.4f", step, last_val["loss"])
            if last_val["loss"] < metrics_state["best_val"]:
                metrics_state["best_val"] = last_val["loss"]
                checkpoint(run.best, last_val)

    def samples() -> None:
        if writer is None:
            return
        ema.copy_to(eval_model)
        task.log_samples(eval_model, writer, step, device)
        writer.flush()

    stop = _StopFlag()
    batches = task.train_batches(device)
    bar = None
    if main and progress:
        from tqdm import tqdm

        bar = tqdm(
            total=max_steps, initial=step, unit="step", dynamic_ncols=True, mininterval=1.0, desc=task.kind
        )
    stopped = "max_steps"
    window_t, window_steps = time.monotonic(), 0
    smooth = None
    bad_steps = 0
    try:
        with stop:
            model.train()
            while step < max_steps:
                halt = stop.reason is not None or (
                    max_minutes is not None and time.monotonic() - t_start >= 60.0 * max_minutes
                )
                if distributed:  # every rank must agree on stopping
                    flag = torch.tensor([1.0 if halt else 0.0], device=device)
                    torch.distributed.all_reduce(flag)
                    halt = bool(flag.item() > 0)
                if halt:
                    stopped = stop.reason or "max_minutes"
                    break
                batch = to_device(next(batches), device)
                with autocast_context(device, cfg.precision):
                    loss, metrics = task.loss(train_model, batch)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
                grad_norm = (
                    torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                    if cfg.grad_clip > 0
                    else torch.sqrt(sum((p.grad.float() ** 2).sum() for p in params if p.grad is not None))
                )
                loss_value = _scalar(loss)
                if not (math.isfinite(loss_value) and math.isfinite(_scalar(grad_norm))):
                    bad_steps += 1
                    log.warning("step %d: non-finite loss/gradient (%s), update skipped", step, loss_value)
                    if bad_steps >= 20:
                        raise RuntimeError("20 consecutive non-finite steps; giving up")
                    optimizer.zero_grad(set_to_none=True)
                    scaler.update()
                    continue
                bad_steps = 0
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                ema.update(model, step)
                step += 1
                window_steps += 1
                history.append((step, loss_value))
                smooth = loss_value if smooth is None else 0.95 * smooth + 0.05 * loss_value
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(
                        loss=f"{smooth:.4f}", lr=f"{scheduler.get_last_lr()[0]:.2e}", refresh=False
                    )
                if not main:
                    continue
                if writer is not None and (step % cfg.log_every == 0 or step == max_steps):
                    now = time.monotonic()
                    writer.add_scalar("train/loss", loss_value, step)
                    for k, v in metrics.items():
                        writer.add_scalar(f"train/{k}", _scalar(v), step)
                    writer.add_scalar("train/lr", scheduler.get_last_lr()[0], step)
                    writer.add_scalar("train/grad_norm", _scalar(grad_norm), step)
                    writer.add_scalar("train/steps_per_s", window_steps / max(now - window_t, 1e-9), step)
                    window_t, window_steps = now, 0
                if cfg.val_every > 0 and step % cfg.val_every == 0:
                    evaluate()
                if cfg.sample_every > 0 and step % cfg.sample_every == 0:
                    samples()
                if time.monotonic() - last_save >= 60.0 * cfg.checkpoint_minutes:
                    checkpoint(run.last)
                    last_save = time.monotonic()
    except KeyboardInterrupt:
        stopped = "interrupted"
        log.warning("interrupted at step %d: saving", step)
    finally:
        if bar is not None:
            bar.close()
    seconds = time.monotonic() - t_start
    if main:
        if stopped != "interrupted" and step > start_step:  # end of a chunk: validate/sample unless just done
            if cfg.val_every == 0 or step % cfg.val_every != 0:
                evaluate()
            if cfg.sample_every == 0 or (cfg.sample_every > 0 and step % cfg.sample_every != 0):
                samples()
        checkpoint(run.last)
        if writer is not None:
            writer.close()
        if file_handler is not None:
            logging.getLogger("model").removeHandler(file_handler)
            file_handler.close()
    if distributed:
        torch.distributed.barrier()
    done = step - start_step
    return {
        "kind": task.kind,
        "step": step,
        "start_step": start_step,
        "stopped": stopped,
        "last_loss": history[-1][1] if history else None,
        "history": history,
        "val": last_val,
        "best_val": metrics_state["best_val"],
        "checkpoint": str(run.last),
        "seconds": seconds,
        "steps_per_s": done / seconds if seconds > 0 else 0.0,
    }


def prepare_run(args: TrainArgs) -> tuple[RunDir, dict | None]:
    """Check the run directory against ``--resume``: the checkpoint to resume from, or None.

    Without ``--resume`` an existing ``last.pt`` is an error (no silent overwrite); with it and no
    checkpoint yet, training starts fresh (handy for chunked GPU sessions).
    """
    run = RunDir(args.out)
    if run.last.exists():
        if not args.resume:
            raise UserError(f"{run.last} exists: pass --resume to continue it, or choose another --out")
        return run, load_checkpoint(run.last)
    if args.resume:
        log.warning("--resume: no checkpoint in %s yet, starting fresh", run.checkpoints)
    return run, None


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


def check_resume_overrides(saved: dict[str, Any], updated: dict[str, Any], frozen: tuple[str, ...]) -> None:
    """On resume, settings of the ``frozen`` sections (e.g. the model architecture) cannot change."""
    for name in frozen:
        if name in saved and saved[name] != updated[name]:
            before, after = dataclasses.asdict(saved[name]), dataclasses.asdict(updated[name])
            changed = sorted(k for k in before if before[k] != after[k])
            raise UserError(f"cannot change {', '.join(f'{name}.{k}' for k in changed)} when resuming")


def resumed_sections(
    ckpt: dict, run: RunDir, args: TrainArgs, classes: dict[str, type], kind: str, noun: str, speakers
) -> dict[str, Any]:
    """Config sections of a resumed run: the checkpoint's, with ``--set`` overrides that may not touch
    the model or audio sections, for a corpus with the checkpoint's speakers. ``noun``: "a teacher"."""
    if ckpt["kind"] != kind:
        raise UserError(f"{run.last} holds a {ckpt['kind']!r} model, not {noun}")
    saved = config_sections_from_checkpoint(ckpt, classes)
    sections = apply_overrides(saved, args.sets)
    check_resume_overrides(saved, sections, ("model", "audio"))
    saved_speakers = ckpt["config"]["data"]["speakers"]
    if list(saved_speakers) != list(speakers):
        raise UserError(f"corpus speakers {speakers} differ from the checkpoint's {saved_speakers}")
    return sections


def preset_sections(args: TrainArgs, presets: dict, train_presets: dict, audio: Any) -> dict[str, Any]:
    """Config sections of a fresh run: the named model and training presets, ``audio``, then ``--set``."""
    if args.preset not in presets:
        raise UserError(f"unknown preset {args.preset!r}; choose from {', '.join(presets)}")
    sections = {"model": presets[args.preset], "train": train_presets[args.preset], "audio": audio}
    return apply_overrides(sections, args.sets)


def summary_table(summary: dict) -> str:
    """A short fixed-width table of a run's outcome (printed last by the CLI)."""
    rows = [
        ("model", summary.get("kind", "")),
        ("steps", f"{summary['start_step']} -> {summary['step']}"),
        ("stopped by", summary["stopped"]),
        ("last loss", "-" if summary["last_loss"] is None else f"{summary['last_loss']:.4f}"),
        ("val loss", "-" if "loss" not in summary["val"] else f"{summary['val']['loss']:.4f}"),
        ("best val", "-" if not math.isfinite(summary["best_val"]) else f"{summary['best_val']:.4f}"),
        ("steps/s", f"{summary['steps_per_s']:.2f}"),
        ("minutes", f"{summary['seconds'] / 60:.1f}"),
        ("checkpoint", summary["checkpoint"]),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
