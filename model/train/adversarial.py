"""The student's adversarial training (issue 37; GAN-based density distillation, Yamamoto et al. 2019).

:class:`Adversary` owns the multi-period and multi-resolution discriminators
(:mod:`model.discriminators`), their Adam (``disc_lr``, ``disc_betas``) and warm-up + cosine
schedule. Per training step, from ``disc_start``, :meth:`Adversary.loss` makes one discriminator
update on the least-squares loss (real -> 1, the student's detached sample -> 0) and then, once
``adv_scale`` is above 0 (``disc_warmup`` steps later, ramped over ``adv_ramp``), returns the
student's weighted LS-GAN + feature-matching loss (the discriminators frozen in that pass).

Its state (discriminators, optimiser, schedule) is the training checkpoint's "aux" section
(:meth:`Adversary.state_dict`), never "model"/"ema".
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Protocol

import torch
from torch import Tensor, nn

from model.checkpoint import UserError, cpu_state
from model.discriminators import DiscConfig, MultiDiscriminator
from model.losses import feature_matching_loss, lsgan_discriminator_loss, lsgan_generator_loss
from model.train.optim import make_scheduler

log = logging.getLogger(__name__)


class AdversarialSettings(Protocol):
    """What the discriminators read of the student's training config (``StudentTrainConfig``,
    which imports this module: a protocol, not an import, keeps the two out of an import circle)."""

    seed: int
    compile: bool
    adv_weight: float
    fm_weight: float
    disc_start: int
    disc_lr: float
    disc_betas: tuple[float, float]
    disc_compile: bool

    def disc_config(self) -> DiscConfig: ...

    def adv_scale(self, step: int) -> float: ...


class Adversary:
    """The discriminators of a student run with ``adv_weight > 0``, and how they train."""

    def __init__(self, cfg: AdversarialSettings):
        self.cfg = cfg
        with torch.random.fork_rng():  # the same initial discriminators in every run of a seed
            torch.manual_seed(cfg.seed)
            self.disc = MultiDiscriminator(cfg.disc_config())
        self.optimizer = torch.optim.Adam(self.disc.parameters(), lr=cfg.disc_lr, betas=tuple(cfg.disc_betas))
        self.scheduler = make_scheduler(self.optimizer, replace(cfg, lr=cfg.disc_lr))
        self._train_disc: nn.Module | None = None  # the compiled discriminators of the training steps

    def to(self, device: torch.device) -> None:
        self.disc.to(device)
        if self._train_disc is None:
            from model.train.precision import compile_module

            # static shapes: the (2B, T) update and the (B, T) student pass are two graphs
            enabled = self.cfg.compile and self.cfg.disc_compile
            self._train_disc = compile_module(self.disc, device, enabled, dynamic=False)

    @property
    def _call(self) -> nn.Module:
        return self._train_disc if self._train_disc is not None else self.disc

    def state_dict(self) -> dict:
        return {
            "disc": cpu_state(self.disc.state_dict()),
            "disc_config": self.cfg.disc_config().to_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
        }

    def load_state_dict(self, state: dict | None) -> None:
        if state is None or "disc" not in state:
            log.info("the resumed run had no discriminators: they start fresh")
            return
        if DiscConfig.from_dict(state["disc_config"]) != self.cfg.disc_config():
            raise UserError("cannot change the discriminators (disc_*) when resuming")
        self.disc.load_state_dict(state["disc"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])

    def update(self, fake: Tensor, real: Tensor, step: int) -> tuple[dict[str, Tensor], list[list[Tensor]]]:
        """One discriminator step on (real, detached fake), (B, T) each. Returns its loss terms and the
        real audio's features (detached; the feature-matching targets)."""
        self.disc.requires_grad_(True)
        b = real.shape[0]
        scores, feats = self._call(torch.cat([real, fake.detach()]))  # [(2B, N)], [[(2B, C, ...)]]
        d_real, d_fake = lsgan_discriminator_loss([s[:b] for s in scores], [s[b:] for s in scores])
        d_loss = d_real + d_fake
        self.optimizer.zero_grad(set_to_none=True)
        if torch.isfinite(d_loss):
            with torch.autocast(device_type=real.device.type, enabled=False):
                d_loss.backward()
            self.optimizer.step()
            self.scheduler.step()
        else:
            log.warning("step %d: non-finite discriminator loss, its update skipped", step)
        real_feats = [[f[:b].detach() for f in fs] for fs in feats]
        terms = {"d_real": d_real.detach(), "d_fake": d_fake.detach(), "d_loss": d_loss.detach()}
        return terms, real_feats

    def loss(self, x: Tensor, audio: Tensor, step: int) -> tuple[Tensor | None, dict[str, Tensor]]:
        """The adversarial part of training step ``step``: the discriminator update (from
        ``disc_start``) and, once warmed up, the student's weighted adversarial + feature-matching
        loss (else None)."""
        cfg = self.cfg
        if step < cfg.disc_start:
            return None, {}
        terms, real_feats = self.update(x, audio, step)
        terms["disc_lr"] = torch.tensor(self.scheduler.get_last_lr()[0])
        scale = cfg.adv_scale(step)
        terms["adv_scale"] = torch.tensor(scale)
        if scale == 0.0:
            return None, terms
        self.disc.requires_grad_(False)  # the student's pass: gradients into x only
        scores, feats = self._call(x)
        adv = lsgan_generator_loss(scores)
        fm = feature_matching_loss(real_feats, feats)
        terms |= {"adv": adv.detach(), "fm": fm.detach()}
        return scale * (cfg.adv_weight * adv + cfg.fm_weight * fm), terms
