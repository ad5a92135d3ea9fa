"""Mixed precision and compilation for training, on CUDA and on CPUs with bf16 matrix units.

- :func:`cpu_bf16_supported`: does this CPU run bf16 matmuls natively (AMX-BF16 or AVX512-BF16,
  through oneDNN)? Detected, not assumed: without it CPU autocast to bf16 emulates the arithmetic
  and is slower than fp32, so ``precision="bf16"`` falls back to fp32 there.
- :func:`effective_precision` / :func:`autocast_context`: ``precision`` (bf16 | fp16 | fp32) as it
  applies on a device: CUDA honours all three (fp16 with a GradScaler); a CPU honours bf16 when
  :func:`cpu_bf16_supported`, else (and for fp16, which this CPU has no fast kernels for) fp32.
  What must stay fp32 stays fp32 inside the models, the same code on both devices: the teacher's
  input conv, output head and residual stream, the flows' heads, the losses and the closed-form KL
  all disable autocast locally (see model/teacher.py, model/student.py, model/losses.py).
- :func:`compile_module`: ``torch.compile`` (inductor) of a training module, with a fallback to
  eager when no C compiler is on PATH (inductor's CPU backend compiles C++) or the compile fails.
  The compile itself happens lazily on the first call (and on shape changes); its time is what
  ``bench.train_speed`` reports as compile time.

Measured on the 2-core Sapphire Rapids host (``python -m bench.train_speed``,
bench/results/train_speed.txt): see that file for the numbers behind these defaults.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import shutil
from pathlib import Path

import torch
from torch import nn

__all__ = [
    "CPU_INDUCTOR_OPTIONS",
    "autocast_context",
    "c_compiler_available",
    "compile_module",
    "cpu_bf16_supported",
    "effective_precision",
]

log = logging.getLogger(__name__)

_CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")

# Inductor options for CPU training compiles (scoped to each compile, forward and backward).
# realize_reads_threshold 2 (default 4): a fused value read by two or more kernels is written once
# instead of recomputed inside each reader. In the channels-last WaveNet that is the residual
# update, which the im2col of the next layer's dilated conv otherwise recomputes once per tap.
# Measured, in-process A/B on the 2-core AMD EPYC (bench/results/train_speed.txt):
# teacher64 step 1.04x, distillation step 1.07x. Since bf16 training runs the dilated convs as
# oneDNN convolutions (no im2col) it pays less: teacher64 1.01x, within noise; kept.
CPU_INDUCTOR_OPTIONS = {"realize_reads_threshold": 2}


@functools.cache
def cpu_bf16_supported() -> bool:
    """True when this CPU has native bf16 matmul instructions that oneDNN uses (AMX-BF16 or
    AVX512-BF16). ``PARAWAVE_CPU_BF16=0`` forces False (fp32 everywhere), ``=1`` forces True."""
    forced = os.environ.get("PARAWAVE_CPU_BF16")
    if forced in ("0", "1"):
        return forced == "1"
    if not torch.backends.mkldnn.is_available():
        return False
    probe = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
    if probe is not None and amx is not None:
        return bool(probe() or amx())
    try:  # older torch: the kernel's flags
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return any(f in flags for f in _CPU_BF16_FLAGS)


def effective_precision(device: torch.device, precision: str) -> str:
    """What ``precision`` (bf16 | fp16 | fp32) means on ``device``: see the module docstring."""
    if precision not in ("bf16", "fp16", "fp32"):
        raise ValueError(f"precision must be bf16, fp16 or fp32, got {precision!r}")
    if device.type == "cuda":
        return precision
    if device.type == "cpu" and precision == "bf16" and cpu_bf16_supported():
        return "bf16"
    return "fp32"


def autocast_context(device: torch.device, precision: str):
    """bf16/fp16 autocast where :func:`effective_precision` says so; nothing (fp32) otherwise."""
    eff = effective_precision(device, precision)
    if eff == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16 if eff == "bf16" else torch.float16)


def c_compiler_available() -> bool:
    """Inductor's CPU backend needs a C++ compiler (``CXX`` or c++/g++/clang++ on PATH)."""
    cxx = os.environ.get("CXX")
    if cxx and shutil.which(cxx):
        return True
    return any(shutil.which(c) for c in ("c++", "g++", "clang++"))


def compile_module(
    module: nn.Module, device: torch.device, enabled: bool = True, dynamic: bool | None = None
) -> nn.Module:
    """``torch.compile(module)`` (inductor) when ``enabled`` and possible, else ``module`` itself.

    The returned wrapper shares the parameters (call it; save ``module.state_dict()``). Compilation
    is lazy (the first call); if it fails there, dynamo's ``suppress_errors`` runs that frame eagerly
    instead of failing the run. ``dynamic``: torch.compile's (False: one graph per input shape).
    """
    if not enabled:
        return module
    if device.type == "cpu" and not c_compiler_available():
        log.warning("torch.compile requested but no C++ compiler is on PATH: training eagerly")
        return module
    import torch._dynamo

    torch._dynamo.config.suppress_errors = True
    return torch.compile(
        module, dynamic=dynamic, options=CPU_INDUCTOR_OPTIONS if device.type == "cpu" else None
    )
