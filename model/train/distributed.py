"""Devices and DDP: the device to train on, the rank and world size under ``torchrun``."""

from __future__ import annotations

import os

import torch

from model.checkpoint import UserError


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


def rank_and_world() -> tuple[int, int, bool]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return int(os.environ.get("RANK", "0")), world, world > 1


def setup_distributed(device: torch.device) -> None:
    import torch.distributed as dist

    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
