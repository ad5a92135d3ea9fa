"""Cached (Fast WaveNet queues) vs naive autoregressive generation of the teacher, one run, same model.

    python -m bench.teacher_generation [--preset gpu] [--seconds 3] [--naive-steps 100]
                                             [--batch 1] [--threads 1] [--checkpoint CKPT]
    python -m bench.teacher_generation --list          # presets, parameters, receptive field

- cached: :meth:`TeacherWaveNet.generate` over the whole utterance (``seconds`` of audio, all
  steps timed, conditioning included), ancestral sampling.
- naive: for each new sample, recompute the parallel (teacher-forced) forward over the last
  ``receptive_field`` inputs -- the smallest window that gives the exact same prediction, so this is
  the *cheapest* naive baseline -- and keep the last output. A second row recomputes the whole
  prefix (``--prefix-steps`` evenly spaced lengths, whose mean time estimates the mean over all
  steps). The per-layer conditioning at the sample rate is precomputed once and not timed (again in
  naive's favour). Timing all steps naively would take hours, so ``--naive-steps`` steps spread
  evenly over the utterance, each at a full receptive field, are timed; the table says so. The
  naive means are checked against the cached run's (same model, same fed-back samples). Both wall
  time and process CPU time are reported: on a shared host the CPU time is the fairer comparison.

Weights are random unless ``--checkpoint`` is given: speed does not depend on their values.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch

from model.teacher import PRESETS, TeacherWaveNet, load_teacher


class _Timer:
    """Wall-clock and process CPU time of a block (CPU time is less sensitive to a busy host)."""

    def __enter__(self) -> _Timer:
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self.wall = time.perf_counter() - self._wall
        self.cpu = time.process_time() - self._cpu


def _model(args) -> TeacherWaveNet:
    if args.checkpoint:
        model, _ = load_teacher(args.checkpoint)
        return model
    torch.manual_seed(0)
    return TeacherWaveNet(PRESETS[args.preset]).eval()


def list_presets() -> None:
    print(
        f"{'preset':<8} {'params':>10} {'layers':>6} {'channels (res/gate/skip)':>24} {'receptive field':>16}"
    )
    for name, cfg in PRESETS.items():
        n = TeacherWaveNet(cfg).num_parameters()
        rf = cfg.receptive_field
        ch = f"{cfg.residual_channels}/{cfg.gate_channels}/{cfg.skip_channels}"
        print(f"{name:<8} {n:>10,} {cfg.layers:>6} {ch:>24} {rf:>7} ({1000 * rf / cfg.sample_rate:.0f} ms)")


@torch.inference_mode()
def naive_means(
    model: TeacherWaveNet, audio: torch.Tensor, cond: torch.Tensor, positions: list[int], prefix: bool = False
) -> torch.Tensor:
    """Per position t: the parallel forward over the last receptive-field inputs (or the whole
    prefix ``[0, t]``), keeping the last output. Returns the means (B, len(positions))."""
    rf = model.receptive_field
    x_in = torch.nn.functional.pad(audio[:, :-1], (1, 0))  # (B, T): input at t is the sample t-1
    out = []
    for t in positions:
        lo = 0 if prefix else t - rf + 1
        mean, _ = model.predict(x_in[:, lo : t + 1], cond=cond[:, :, lo : t + 1])  # (B, t + 1 - lo)
        out.append(mean[:, -1])
    return torch.stack(out, dim=1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="gpu", choices=sorted(PRESETS))
    parser.add_argument("--checkpoint", default=None, help="use a trained teacher instead of a preset")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--naive-steps", type=int, default=100, help="timed naive steps, full-RF window")
    parser.add_argument(
        "--prefix-steps",
        type=int,
        default=8,
        help="timed naive steps recomputing the whole prefix (0 = skip)",
    )
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads for both methods")
    parser.add_argument("--list", action="store_true", help="list the presets and exit")
    args = parser.parse_args(argv)
    if args.list:
        list_presets()
        return

    torch.set_num_threads(args.threads)
    model = _model(args)
    cfg = model.cfg
    n_frames = round(args.seconds * cfg.sample_rate / cfg.hop_length)
    T = n_frames * cfg.hop_length
    rf = model.receptive_field
    gen = torch.Generator().manual_seed(0)
    mel = torch.randn(args.batch, cfg.n_mels, n_frames, generator=gen) * 2.0 - 5.0  # (B, n_mels, F)
    speaker = torch.zeros(args.batch, dtype=torch.long)

    model.generate(mel[:, :, :2], speaker, seed=0, num_threads=args.threads)  # warm-up
    with _Timer() as cached_t:
        audio, means, _ = model.generate(mel, speaker, seed=0, return_params=True, num_threads=args.threads)
    rows = [("cached", f"{T} (all)", T, cached_t)]

    with torch.inference_mode():
        cond = model.stack.upsampler(model.frame_conditioning(mel, speaker))  # (B, L*2G, T), untimed
    k = max(1, min(args.naive_steps, T - rf + 1))
    positions = torch.linspace(rf - 1, T - 1, k).round().long().tolist()
    naive_means(model, audio, cond, positions[:2])  # warm-up
    with _Timer() as naive_t:
        nm = naive_means(model, audio, cond, positions)
    rows.append(("naive-rf", f"{k} of {T} (RF window)", k, naive_t))
    max_diff = float((nm - means[:, positions]).abs().max())
    if args.prefix_steps > 0:
        # evenly spaced prefix lengths: their mean time estimates the mean over all T steps
        kp = min(args.prefix_steps, T)
        prefix_positions = [round((i + 0.5) * T / kp) - 1 for i in range(kp)]
        with _Timer() as prefix_t:
            pm = naive_means(model, audio, cond, prefix_positions, prefix=True)
        rows.append(("naive-pre", f"{kp} of {T} (prefix)", kp, prefix_t))
        max_diff = max(max_diff, float((pm - means[:, prefix_positions]).abs().max()))

    source = args.checkpoint or f"preset {args.preset} (random weights)"
    print(f"teacher generation benchmark: {source}")
    print(
        f"  {model.num_parameters():,} parameters, {cfg.layers} layers, receptive field {rf} samples; "
        f"{args.seconds:g} s = {T} samples at {cfg.sample_rate} Hz, batch {args.batch}"
    )
    cpu = platform.processor() or platform.machine()
    print(f"  torch {torch.__version__}, {torch.get_num_threads()} thread(s), {cpu}, {os.cpu_count()} cores")
    print()
    print(f"  {'method':<10} {'steps timed':>22} {'wall s':>8} {'CPU s':>8} {'samples/s':>10} {'(CPU)':>9}")
    rates = {}
    for name, label, steps, t in rows:
        wall_sps, cpu_sps = args.batch * steps / t.wall, args.batch * steps / t.cpu
        rates[name] = (wall_sps, cpu_sps)
        print(f"  {name:<10} {label:>22} {t.wall:>8.2f} {t.cpu:>8.2f} {wall_sps:>10.2f} {cpu_sps:>9.2f}")
    print()
    cached = rates["cached"]
    for name, what in (("naive-rf", "the cheapest exact naive"), ("naive-pre", "whole prefix")):
        if name in rates:
            wall, cpu_ = cached[0] / rates[name][0], cached[1] / rates[name][1]
            print(f"  speed-up cached / {name} ({what}): {wall:.1f}x wall time, {cpu_:.1f}x CPU time")
    print(
        f"  cached: {cached[0] / cfg.sample_rate:.4f}x real time; naive-rf over all {T} steps would take "
        f"~{args.batch * T / rates['naive-rf'][0] / 60:.0f} min (extrapolated from the timed steps, each with "
        "a full receptive field)"
    )
    print(f"  max |mean(naive) - mean(cached)| over the timed steps: {max_diff:.2e}")


if __name__ == "__main__":
    main()
