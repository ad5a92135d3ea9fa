"""What machine a load test ran on: CPU model and cores, memory, GPUs (nvidia-smi when present)."""

from __future__ import annotations

import logging
import os
import platform
import shutil
import subprocess
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / (1 << 20), 1)  # kB -> GiB
    except (OSError, ValueError, IndexError):
        pass
    return None


def gpus() -> list[dict[str, str]]:
    """One dict per GPU (name, memory, driver) from nvidia-smi; [] when there is none."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        out = subprocess.run(
            [exe, "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=15,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning("nvidia-smi failed: %s", exc)
        return []
    found = []
    for line in out.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 3:
            found.append({"name": parts[0], "memory": parts[1], "driver": parts[2]})
    return found


def describe() -> dict[str, Any]:
    """The client machine (for a server on loopback, also the server's)."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count()
    return {
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_usable": usable,
        "memory_gib": memory_gib(),
        "gpus": gpus(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def summary(hw: dict[str, Any]) -> str:
    """One line, e.g. 'Intel Xeon ... (2 cores, 24.0 GiB), GPU: NVIDIA H100 80GB HBM3'."""
    cores = hw.get("cpu_usable") or hw.get("cpu_count")
    mem = f", {hw['memory_gib']} GiB" if hw.get("memory_gib") else ""
    gpu = ", ".join(g["name"] for g in hw.get("gpus") or []) or "none"
    return f"{hw.get('cpu_model', 'unknown CPU')} ({cores} cores{mem}), GPU: {gpu}"
