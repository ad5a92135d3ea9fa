"""Training configuration: :class:`TrainConfig` (the optimisation settings every trainer shares),
:class:`TrainArgs` (the shared command line) and the ``--set key=value`` overrides of frozen
dataclass configs (:func:`apply_overrides`; a run's config sections are built in ``model.train.setup``)."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from model.checkpoint import UserError

log = logging.getLogger(__name__)


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
    precision: str = "bf16"  # bf16 | fp16 | fp32; a CPU without native bf16 (or fp16) runs fp32
    compile: bool = False  # torch.compile (inductor) the trained module; eager without a C compiler
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
    max_cpu_minutes: float | None = None  # this process's CPU time (equal-budget A/Bs on a shared host)
    device: str | None = None
    teacher: Path | None = None  # the student's frozen teacher checkpoint
    init: Path | None = None  # start a fresh run from this checkpoint's weights and architecture


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


# What a trainer's preset of a name shares with the other trainers' (each adds its own settings):
# "tiny" (smoke tests and CI, seconds on a CPU) for every trainer, "cpu" and "gpu" for the two
# vocoders (teacher and student: same windows, schedule and bookkeeping).
TINY_PRESET: dict[str, Any] = {
    "steps": 200,
    "batch_size": 4,
    "warmup_steps": 5,
    "ema_decay": 0.99,
    "num_workers": 0,
    "threads": 1,
    "log_every": 5,
    "val_every": 0,
    "val_batches": 2,
    "sample_every": -1,
}
VOCODER_PRESETS: dict[str, dict[str, Any]] = {
    "cpu": {
        "batch_size": 4,
        "lr": 1e-3,
        "warmup_steps": 500,
        "ema_decay": 0.999,
        "num_workers": 1,
        "compile": True,  # issue 16: with CPU bf16, ~3.5x the fp32 Conv1d step (bench/results)
        "log_every": 50,
        "val_every": 1000,
        "val_batches": 8,
        "sample_every": 5000,
        "checkpoint_minutes": 10.0,
    },
    "gpu": {
        "segment_frames": 40,
        "lr": 1e-3,
        "warmup_steps": 1000,
        "ema_decay": 0.9999,
        "precision": "bf16",
        "num_workers": 8,
        "log_every": 100,
        "val_every": 2000,
        "val_batches": 16,
        "sample_every": 10_000,
        "checkpoint_minutes": 5.0,
    },
}
