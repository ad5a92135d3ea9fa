"""Student speed through ONNX Runtime on the CPU: each preset and a few candidate sizes, one table.

    python -m bench.student_speed [--seconds 4] [--threads 2] [--repeats 5] [--only cpu,c24x16]
                                        [--checkpoint CKPT] [--list]

For every configuration: build the student (random weights -- speed does not depend on their
values; the zero-initialised heads are randomised so no flow is a trivial identity), fold weight
normalisation, export it with the bundle's exporter (``export.onnx.export_student``: the graph
contract of ``service.graphs.STUDENT``, opset 17, dynamic axes) into a temporary folder, and time ``InferenceSession.run`` with
``intra_op_num_threads=threads`` (inter-op 1, all graph optimisations) on one utterance of
``--seconds`` of audio (mel frames + noise in, audio out: the whole student, conditioning
included). One warm-up run each, then ``--repeats`` rounds that run every configuration once,
interleaved (a burst of load elsewhere hits all configurations alike): the table shows the best and
the median (on a shared machine the best is the capacity, the median what a busy machine gives).

Columns: parameters, multiply-adds per output sample at the sample rate, receptive field, RTF
(wall seconds per second of audio; < 1 is faster than real time), x real time, samples/s, and
"CPU s/s": process CPU seconds per second of audio (best run) -- the work itself, which other
processes on a shared machine inflate much less than the wall time; with 2 threads an idle machine
gives roughly RTF = CPU s/s / 2 (or somewhat more: the threads do not split every op evenly). ORT's
idle-thread spinning is off (``--spin`` turns it on) so the CPU time is work, not busy-waiting.
This is a measurement tool; the production exporter lives in ``export/``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from model.student import PRESETS, StudentConfig, StudentIAF, load_student
from model.wavenet import remove_weight_norm


def _candidate(layers: tuple[int, ...], channels: int, cycle: int, kernel: int = 2, **kw) -> StudentConfig:
    return replace(
        PRESETS["cpu"],
        flow_layers=layers,
        dilation_cycle=cycle,
        residual_channels=channels,
        gate_channels=channels,
        kernel_size=kernel,
        **kw,
    )


# Candidate sizes around the cpu preset (16 channels, 4 flows x 6 layers, kernel 2): name = channels
# - flows x layers per flow - kernel (nn: nearest-neighbour upsampling). preset:gpu is Parallel WaveNet's 64-channel 10/10/10/30 layout,
# measured before this design at RTF ~1.1 with the per-layer conditioning projection at the
# sample rate (here it runs at frame rate).
CANDIDATES: dict[str, StudentConfig] = {
    "c32-4x6-k2": _candidate((6, 6, 6, 6), 32, 6),
    "c32-4x4-k2": _candidate((4, 4, 4, 4), 32, 4),
    "c24-4x4-k2": _candidate((4, 4, 4, 4), 24, 4),
    "c24-4x6-k2": _candidate((6, 6, 6, 6), 24, 6),
    "c24-4x4-k3": _candidate((4, 4, 4, 4), 24, 4, kernel=3),
    "c20-3x6-k2": _candidate((6, 6, 6), 20, 6),
    "c20-4x5-k2": _candidate((5, 5, 5, 5), 20, 5),
    "c16-4x4-k2": _candidate((4, 4, 4, 4), 16, 4),
    "c24-2x8-k2": _candidate((8, 8), 24, 8),
    "c16-4x6-nn": _candidate((6, 6, 6, 6), 16, 6, upsample="nearest"),
    # the shipped student's layout (4 flows x 8 layers, dilations 1..128) and its wider sibling: the
    # size A/B of issue 19 (recipes/reports/student-size/)
    "c16-4x8-k2": _candidate((8, 8, 8, 8), 16, 8),
    "c24-4x8-k2": _candidate((8, 8, 8, 8), 24, 8),
    "c32-4x8-k2": _candidate((8, 8, 8, 8), 32, 8),
}


def export_onnx(model: StudentIAF, path: Path) -> list[str]:
    """The bundle's student graph (``export.onnx.export_student``: the interface of
    ``service.graphs.STUDENT``, its opset and dynamic axes) written to ``path``; returns its input names."""
    from export.onnx import export_student, save
    from service import graphs

    save(export_student(model), path)
    return graphs.STUDENT.input_names


def randomize_heads(model: StudentIAF, seed: int = 0, scale: float = 1e-3) -> StudentIAF:
    """Random head weights (trained students are not identities; speed is the same either way)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for flow in model.flows:
            flow.head.weight.copy_(torch.randn(flow.head.weight.shape, generator=g) * scale)
    return model


def make_session(path: Path, threads: int, spin: bool = False):
    import onnxruntime as ort

    from service.sessions import session_options

    # without spin, idle threads sleep instead of spinning: process CPU time = work done
    opts = session_options(threads, spin=spin)
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def prepare(name: str, model: StudentIAF, seconds: float, tmp: Path) -> dict:
    """Export ``model`` and make its inputs for one utterance of ``seconds``."""
    cfg = model.cfg
    remove_weight_norm(model).eval()
    path = tmp / f"{name}.onnx"
    names = export_onnx(model, path)
    n_frames = round(seconds * cfg.sample_rate / cfg.hop_length)
    T = n_frames * cfg.hop_length
    rng = np.random.default_rng(0)
    values = (
        rng.standard_normal((1, T)).astype(np.float32),  # z
        (rng.standard_normal((1, cfg.n_mels, n_frames)) * 2.0 - 5.0).astype(np.float32),  # mel
        np.zeros(1, dtype=np.int64),  # speaker (unused by a single-speaker student)
        np.zeros((1, 3, T), dtype=np.float32),  # excitation (its cost is the same voiced or not)
    )
    feeds = dict(zip(names, values, strict=True))
    return {
        "name": name,
        "path": path,
        "feeds": feeds,
        "audio_s": T / cfg.sample_rate,
        "samples": T,
        "params": model.num_parameters(),
        "macs": cfg.macs_per_sample(),
        "rf": cfg.receptive_field,
        "layers": "/".join(str(n) for n in cfg.flow_layers),
        "channels": cfg.residual_channels,
        "kernel": cfg.kernel_size,
        "onnx_mb": path.stat().st_size / 1e6,
    }


def time_all(jobs: list[dict], threads: int, repeats: int, spin: bool = False) -> list[dict]:
    """One warm-up each, then ``repeats`` rounds running every configuration once per round
    (interleaved, so a burst of load elsewhere hits all of them alike). Adds the timings to ``jobs``."""
    sessions = [make_session(job["path"], threads, spin) for job in jobs]
    for job, session in zip(jobs, sessions, strict=True):
        session.run(None, job["feeds"])  # warm-up
        job["wall"], job["cpu"] = [], []
    for _ in range(repeats):
        for job, session in zip(jobs, sessions, strict=True):
            t0, c0 = time.perf_counter(), time.process_time()
            session.run(None, job["feeds"])
            job["wall"].append(time.perf_counter() - t0)
            job["cpu"].append(time.process_time() - c0)
    for job in jobs:
        best, median = min(job["wall"]), statistics.median(job["wall"])
        job["rtf_best"] = best / job["audio_s"]
        job["rtf_median"] = median / job["audio_s"]
        job["sps_best"] = job["samples"] / best
        job["cpu_best"] = min(job["cpu"]) / job["audio_s"]
    return jobs


def print_table(rows: list[dict]) -> None:
    head = (
        f"{'config':<14} {'params':>10} {'layers':>12} {'ch':>3} {'k':>2} {'MACs/sample':>12} {'RF':>6}"
        f" {'RTF best':>9} {'RTF med':>8} {'x RT best':>9} {'samples/s best':>15} {'CPU s/s':>8}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r['name']:<14} {r['params']:>10,} {r['layers']:>12} {r['channels']:>3} {r['kernel']:>2}"
            f" {r['macs']:>12,} {r['rf']:>6} {r['rtf_best']:>9.4f} {r['rtf_median']:>8.4f}"
            f" {1 / r['rtf_best']:>9.1f} {r['sps_best']:>15,.0f} {r['cpu_best']:>8.4f}"
        )


def configs(only: list[str] | None) -> dict[str, StudentConfig]:
    every = {f"preset:{k}": v for k, v in PRESETS.items() if k != "tiny"} | CANDIDATES
    if not only:
        return every
    chosen = {}
    for key in only:
        name = key if key in every else f"preset:{key}"
        if name not in every:
            raise SystemExit(f"unknown config {key!r}; choose from {', '.join(every)}")
        chosen[name] = every[name]
    return chosen


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="utterance length")
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per configuration")
    parser.add_argument("--spin", action="store_true", help="let ORT's idle threads spin (its default)")
    parser.add_argument("--only", default="", help="comma-separated configs (presets by name)")
    parser.add_argument("--checkpoint", default=None, help="time a trained student checkpoint instead")
    parser.add_argument("--list", action="store_true", help="list configurations with parameters and exit")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    torch.set_num_threads(max(1, args.threads))
    only = [s.strip() for s in args.only.split(",") if s.strip()] or None

    if args.list:
        for name, cfg in configs(only).items():
            n = StudentIAF(cfg).num_parameters()
            print(
                f"{name:<14} {n:>10,} params  {cfg.macs_per_sample():>10,} MACs/sample  RF {cfg.receptive_field}"
            )
        return

    print(
        f"student ONNX Runtime CPU speed: {args.seconds:g} s utterance, intra_op_num_threads={args.threads}, "
        f"{args.repeats} interleaved timed rounds after 1 warm-up; load average {os.getloadavg()[0]:.1f} on "
        f"{os.cpu_count()} cores ({_cpu_name()})"
    )
    with tempfile.TemporaryDirectory(prefix="student-speed-") as tmp:
        if args.checkpoint:
            model, _ = load_student(args.checkpoint)
            jobs = [prepare("checkpoint", model, args.seconds, Path(tmp))]
        else:
            jobs = [
                prepare(name, randomize_heads(StudentIAF(cfg)), args.seconds, Path(tmp))
                for name, cfg in configs(only).items()
            ]
        rows = time_all(jobs, args.threads, args.repeats, args.spin)
    print()
    print_table(rows)


if __name__ == "__main__":
    main()
