"""Optimisation bits: EMA (Polyak) weights, Adam, the warm-up + cosine schedule, autocast."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from model.checkpoint import cpu_state
from model.train.config import TrainConfig


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
        return cpu_state(self.shadow)

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


def autocast_context(device: torch.device, precision: str):
    """bf16/fp16 autocast where the device supports it (model.train.precision); else fp32."""
    from model.train.precision import autocast_context as _autocast  # issue 16: CPU bf16

    return _autocast(device, precision)
