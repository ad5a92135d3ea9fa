"""Training-step speed on this CPU: today's path (fp32, (B, C, T) Conv1d, eager) against the new
one (channels-last per-tap matmuls, bf16 autocast, torch.compile), side by side in one process.

    python -m bench.train_speed [--threads 1] [--rounds 5] [--steps 3] [--only teacher64,...]
                                      [--breakdown] [--out bench/results/train_speed.txt]

Cases (random weights and a fixed random batch; speed does not depend on the values):

- ``teacher64``: the teacher at 64 channels x 20 layers (TeacherConfig defaults), batch 4 x 8,000;
- ``teachercpu``: the shipped ``cpu`` teacher preset (32 x 10), batch 4 x 8,000;
- ``distill``: a distillation step: the ``cpu`` student preset plus a frozen 64 x 20 teacher,
  teacher-forced on the student's sample, backward through the teacher into the student; KL +
  regulariser + multi-resolution STFT, batch 4 x 4,000 (the student ``cpu`` training window);
- ``acoustic``: the ``cpu`` acoustic preset, batch 16 of ~80 phonemes / ~400 frames, MAS included.

Each path has its own copy of the same initial weights and its own Adam; a step is forward, loss,
backward, gradient clipping and the optimizer update, as in ``model.train.loop``. Paths run
interleaved (``--rounds`` rounds of ``--steps`` steps each, after a warm-up that includes any
compilation, timed separately), so load from other processes hits them alike; the table gives the
median over rounds. Throughput is samples/s (frames/s for the acoustic model). FLOPs are the
matmul/conv FLOPs of one fp32 step (``torch.utils.flop_counter``; the acoustic model's LSTMs and
MAS are not counted), and MFU is that rate against the bf16 matmul peak measured here at the same
thread count ((16384 x 256) @ (256 x 256), best of several).

Paths: ``old`` fp32 Conv1d eager (``model.wavenet.Layout.REFERENCE``); ``new`` the trainer's
fast path (bf16 when the CPU supports it, compiled where it pays: the WaveNet-family models; the
acoustic model is eager, its batches change shape every step). ``--breakdown`` adds the pieces:
channels-last fp32 eager, channels-last bf16 eager, channels-last fp32 compiled.
"""

from __future__ import annotations

import argparse
import copy
import logging
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch._dynamo
from torch import Tensor, nn

from model.train.precision import autocast_context, compile_module, cpu_bf16_supported
from model.wavenet import Layout

log = logging.getLogger(__name__)

CASES = ("teacher64", "teachercpu", "distill", "acoustic")


@dataclass(frozen=True)
class Path_:
    name: str
    layout: Layout  # REFERENCE: (B, C, T) Conv1d
    precision: str  # bf16 | fp32
    compiled: bool


OLD = Path_("old fp32 conv1d", Layout.REFERENCE, "fp32", False)
NEW = Path_("new bf16 compiled", Layout.CHANNELS_LAST, "bf16", True)
NEW_ACOUSTIC = Path_("new bf16 eager", Layout.CHANNELS_LAST, "bf16", False)
BREAKDOWN = (
    Path_("cl fp32 eager", Layout.CHANNELS_LAST, "fp32", False),
    Path_("cl bf16 eager", Layout.CHANNELS_LAST, "bf16", False),
    Path_("cl fp32 compiled", Layout.CHANNELS_LAST, "fp32", True),
)


@dataclass
class Case:
    name: str
    units: float  # samples (frames) per step
    unit: str
    # (models to train, frozen helpers) -> loss function of the batch, in a WaveNet layout
    build: Callable[[], tuple[nn.Module, dict]]
    loss: Callable[[nn.Module, dict, dict, Layout], Tensor]
    compile_ok: bool = True


def teacher_case(name: str, cfg, batch: int, samples: int) -> Case:
    from model.distributions import gaussian_nll
    from model.teacher import TeacherWaveNet

    frames = samples // cfg.hop_length

    def build():
        g = torch.Generator().manual_seed(0)
        data = {
            "audio": 0.3 * torch.randn(batch, frames * cfg.hop_length, generator=g).clamp(-3, 3) / 3,
            "mel": -4.0 + 2.0 * torch.randn(batch, cfg.n_mels, frames, generator=g),
            "speaker": torch.zeros(batch, dtype=torch.long),
        }
        return TeacherWaveNet(cfg), {"batch": data}

    def loss(model, extra, helpers, layout):
        b = extra["batch"]
        mean, log_scale = model(b["audio"], b["mel"], b["speaker"], layout=layout)  # (B, T) each, fp32
        return gaussian_nll(b["audio"], mean, log_scale)

    return Case(name, batch * frames * cfg.hop_length, "samples", build, loss)


def distill_case(batch: int, frames: int) -> Case:
    from model.losses import MultiResolutionSTFTLoss, distillation_kl
    from model.student import PRESETS as STUDENT_PRESETS
    from model.student import StudentIAF
    from model.teacher import TeacherConfig, TeacherWaveNet
    from model.train.student import TRAIN_PRESETS

    s_cfg = STUDENT_PRESETS["cpu"]
    t_cfg = TeacherConfig()
    train = TRAIN_PRESETS["cpu"]
    T = frames * s_cfg.hop_length

    def build():
        g = torch.Generator().manual_seed(0)
        teacher = TeacherWaveNet(t_cfg).eval()
        teacher.requires_grad_(False)
        data = {
            "audio": 0.1 * torch.randn(batch, T, generator=g),
            "mel": -4.0 + 2.0 * torch.randn(batch, s_cfg.n_mels, frames, generator=g),
            "speaker": torch.zeros(batch, dtype=torch.long),
            "z": torch.randn(batch, T, generator=g),
        }
        stft = MultiResolutionSTFTLoss(train.stft_ffts, train.stft_sc_weight, train.stft_mag_weight, 0.0)
        return StudentIAF(s_cfg), {"batch": data, "teacher": teacher, "stft": stft}

    def loss(model, extra, helpers, layout):
        b = extra["batch"]
        x, mean_q, log_scale_q = model(b["z"], b["mel"], b["speaker"], return_params=True, layout=layout)
        mean_p, log_scale_p = helpers["teacher"](x, b["mel"], b["speaker"], layout=layout)
        kl, reg = distillation_kl(mean_q, log_scale_q, mean_p, log_scale_p, t_cfg.log_scale_min)
        return train.stft_weight * extra["stft"](x, b["audio"])["loss"] + kl.mean() + 4.0 * reg.mean()

    return Case("distill", batch * T, "samples", build, loss)


def acoustic_case(batch: int, phonemes: int, frames: int) -> Case:
    from model.acoustic import PRESETS as ACOUSTIC_PRESETS
    from model.acoustic import AcousticModel, acoustic_losses

    cfg = ACOUSTIC_PRESETS["cpu"]
    g = torch.Generator().manual_seed(0)
    text_lens = torch.randint(phonemes * 6 // 10, phonemes + 1, (batch,), generator=g)
    text_lens[0] = phonemes
    mel_lens = (text_lens * frames // phonemes).clamp(max=frames)
    mel_lens[0] = frames

    def build():
        g = torch.Generator().manual_seed(1)
        ids = torch.randint(1, 40, (batch, phonemes), generator=g)
        ids = ids * (torch.arange(phonemes)[None] < text_lens[:, None])
        mel = -4.0 + 2.0 * torch.randn(batch, cfg.n_mels, frames, generator=g)
        mel = mel * (torch.arange(frames)[None, None] < mel_lens[:, None, None])
        data = {"phonemes": ids, "text_lens": text_lens, "mel": mel, "mel_lens": mel_lens}
        if cfg.pitch:  # a pitch-aware model trains on the target F0: 90-250 Hz, a third unvoiced
            f0 = 90.0 + 160.0 * torch.rand(batch, frames, generator=g)  # (B, F) Hz
            f0 = f0 * (torch.rand(batch, frames, generator=g) > 1 / 3)
            data["f0"] = f0 * (torch.arange(frames)[None] < mel_lens[:, None])
        return AcousticModel(cfg), {"batch": data}

    def loss(model, extra, helpers, layout):
        b = extra["batch"]
        out = model(
            b["phonemes"], b["text_lens"], b["mel"], b["mel_lens"], torch.zeros(batch, dtype=torch.long),
            f0=b.get("f0"),
        )  # fmt: skip
        return acoustic_losses(out, b["text_lens"], b["mel_lens"], 1.0, cfg.f0_log_std)["total"]

    return Case("acoustic", float(mel_lens.sum()), "frames", build, loss, compile_ok=False)


class Runner:
    """One path of one case: its own model copy, Adam, and (maybe) compiled module."""

    def __init__(self, case: Case, path: Path_, model: nn.Module, extra: dict):
        self.case, self.path = case, path
        self.model = copy.deepcopy(model).train()
        self.extra = extra
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-4)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        device = torch.device("cpu")
        self.call = compile_module(self.model, device, path.compiled)
        helpers = {}
        if "teacher" in extra:
            helpers["teacher"] = compile_module(extra["teacher"], device, path.compiled)
        self.helpers = helpers
        self.times: list[float] = []
        self.warmup_s = 0.0

    def step(self) -> float:
        t0 = time.perf_counter()
        with autocast_context(torch.device("cpu"), self.path.precision):
            loss = self.case.loss(self.call, self.extra, self.helpers, self.path.layout)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.opt.step()
        return time.perf_counter() - t0


def count_flops(case: Case, model: nn.Module, extra: dict) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    m = copy.deepcopy(model)
    helpers = {"teacher": extra["teacher"]} if "teacher" in extra else {}
    with FlopCounterMode(display=False) as counter:
        case.loss(m, extra, helpers, Layout.REFERENCE).backward()
    return float(counter.get_total_flops())


def bf16_peak(repeats: int = 20) -> float:
    """Best bf16 (16384 x 256) @ (256 x 256) rate, FLOP/s, at the current thread count."""
    dtype = torch.bfloat16 if cpu_bf16_supported() else torch.float32
    a = torch.randn(16384, 256, dtype=dtype)
    b = torch.randn(256, 256, dtype=dtype)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * 16384 * 256 * 256 / best


def run_case(case: Case, paths: list[Path_], rounds: int, steps: int, peak: float) -> list[str]:
    model, extra = case.build()
    flops = count_flops(case, model, extra)
    runners = [Runner(case, p, model, extra) for p in paths]
    for r in runners:  # warm-up: compilation (first call) plus one ordinary step
        t0 = time.perf_counter()
        r.step()
        first = time.perf_counter() - t0
        second = r.step()
        r.warmup_s = max(first - second, 0.0)
        log.info("%s / %s: first step %.1f s, then %.3f s", case.name, r.path.name, first, second)
    for _ in range(rounds):
        for r in runners:
            r.times.extend([r.step() for _ in range(steps)])
    base = statistics.median(runners[0].times)
    lines = []
    for r in runners:
        t = statistics.median(r.times)
        rate = case.units / t
        mfu = flops / t / peak
        compile_s = f"{r.warmup_s:7.1f}" if r.path.compiled else "      -"
        lines.append(
            f"{case.name:<11} {r.path.name:<19} {t * 1e3:9.1f} {rate:12,.0f} {base / t:6.2f}x "
            f"{flops / t / 1e9:8.1f} {100 * mfu:6.1f}% {compile_s}"
        )
    return lines


def main(argv: list[str] | None = None) -> None:
    from model.acoustic import PRESETS as ACOUSTIC_PRESETS  # noqa: F401  (import check)
    from model.teacher import PRESETS as TEACHER_PRESETS
    from model.teacher import TeacherConfig

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=3, help="steps per path per round")
    parser.add_argument("--only", default=",".join(CASES), help=f"comma-separated subset of {CASES}")
    parser.add_argument("--breakdown", action="store_true", help="also time the new path's pieces")
    parser.add_argument("--out", type=Path, default=None, help="also write the table here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    torch._dynamo.config.cache_size_limit = 64  # one compiled graph per (model copy, path)

    cases = {
        "teacher64": lambda: teacher_case("teacher64", TeacherConfig(), 4, 8000),
        "teachercpu": lambda: teacher_case("teachercpu", replace(TEACHER_PRESETS["cpu"]), 4, 8000),
        "distill": lambda: distill_case(4, 20),
        "acoustic": lambda: acoustic_case(16, 80, 400),
    }
    wanted = [c.strip() for c in args.only.split(",") if c.strip()]
    unknown = set(wanted) - set(cases)
    if unknown:
        parser.error(f"unknown cases {sorted(unknown)}; choose from {CASES}")
    peak = bf16_peak()
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    header = [
        f"train_speed: torch {torch.__version__}, {args.threads} thread(s), {cpu}, {os.cpu_count()} cores, "
        f"cpu bf16 {'yes' if cpu_bf16_supported() else 'no'}",
        f"bf16 matmul peak (16384x256 @ 256x256) {peak / 1e9:.0f} GFLOP/s; median of {args.rounds} rounds "
        f"x {args.steps} steps, paths interleaved; load average {os.getloadavg()[0]:.1f}",
        "",
        f"{'case':<11} {'path':<19} {'ms/step':>9} {'units/s':>12} {'ratio':>7} {'GFLOP/s':>8} "
        f"{'MFU':>7} {'compile s':>9}",
    ]
    print("\n".join(header), flush=True)
    lines = list(header)
    for name in wanted:
        case = cases[name]()
        paths = [OLD, NEW if case.compile_ok else NEW_ACOUSTIC]
        if args.breakdown:
            paths += [p for p in BREAKDOWN if case.compile_ok or not p.compiled]
        rows = run_case(case, paths, args.rounds, args.steps, peak)
        rows[0] += f"   ({case.unit})"
        print("\n".join(rows), flush=True)
        lines += rows
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
