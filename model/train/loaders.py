"""Training data: DataLoaders (DDP-aware, detached workers), endless batches, batches to a device."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor

from model.checkpoint import UserError

log = logging.getLogger(__name__)


def to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor of a (nested) batch to ``device``."""
    if isinstance(batch, Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, list | tuple):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


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
