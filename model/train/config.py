"""Training configuration: :class:`TrainConfig` (the optimisation settings every trainer shares),
:class:`TrainArgs` (the shared command line) and the ``--set key=value`` overrides of frozen
dataclass configs, for a fresh run (:func:`preset_sections`) or a resumed one (:func:`resumed_sections`)."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from model.checkpoint import UserError, check_kind, config_sections_from_checkpoint

if TYPE_CHECKING:
    from model.train.rundir import RunDir

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
    check_kind(ckpt, kind, run.last, noun)
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
