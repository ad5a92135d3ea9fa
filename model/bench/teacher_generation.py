"""Cached (Fast WaveNet queues) vs naive autoregressive generation of the teacher, one run, same model.

    python -m model.bench.teacher_generation [--preset gpu] [--seconds 3] [--naive-steps 100]
                                             [--batch 1] [--threads 1] [--checkpoint CKPT]
    python -m model.bench.teacher_generation --list          # presets, parameters, receptive field

- cached: :meth:`TeacherWaveNet.generate` over the whole utterance (``seconds`` of audio, all
  steps timed, conditioning included), ancestral sampling.
- naive: for each new sample, recompute the parallel (teacher-forced) forward over the last
  ``receptive_field`` inputs -- the smallest window that gives the exact same prediction, so this is
  the *cheapest* naive baseline (recomputing the whole prefix is slower still) -- and keep the last
  output. The per-layer conditioning at the sample rate is precomputed once and not timed (again in
  naive's favour). Timing all steps naively would take hours, so ``--naive-steps`` steps spread
  evenly over the utterance, each at a full receptive field, are timed; the table says so. The
  naive means are checked against the cached run's (same model, same fed-back samples).

Weights are random unless ``--checkpoint`` is given: speed does not depend on their values.
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from model.teacher import PRESETS, TeacherWaveNet, load_teacher


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
def naive_means(model: TeacherWaveNet, audio: torch.Tensor, cond: torch.Tensor, positions: list[int]):
    """Per position t: the parallel forward over the last receptive-field inputs, last output."""
    rf = model.receptive_field
    x_in = torch.nn.functional.pad(audio[:, :-1], (1, 0))  # (B, T): input at t is the sample t-1
    out = []
    for t in positions:
        lo = t - rf + 1
        mean, _ = model.predict(x_in[:, lo : t + 1], cond=cond[:, :, lo : t + 1])  # (B, rf)
        out.append(mean[:, -1])
    return torch.stack(out, dim=1)  # (B, len(positions))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="gpu", choices=sorted(PRESETS))
    parser.add_argument("--checkpoint", default=None, help="use a trained teacher instead of a preset")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--naive-steps", type=int, default=100)
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
    t0 = time.perf_counter()
    audio, means, _ = model.generate(mel, speaker, seed=0, return_params=True, num_threads=args.threads)
    cached_s = time.perf_counter() - t0
    cached_sps = args.batch * T / cached_s

    with torch.inference_mode():
        cond = model.stack.upsampler(model.frame_conditioning(mel, speaker))  # (B, L*2G, T), untimed
    k = max(1, min(args.naive_steps, T - rf + 1))
    positions = torch.linspace(rf - 1, T - 1, k).round().long().tolist()
    naive_means(model, audio, cond, positions[:2])  # warm-up
    t0 = time.perf_counter()
    nm = naive_means(model, audio, cond, positions)
    naive_s = time.perf_counter() - t0
    naive_sps = args.batch * k / naive_s
    max_diff = float((nm - means[:, positions]).abs().max())

    source = args.checkpoint or f"preset {args.preset} (random weights)"
    print(f"teacher generation benchmark: {source}")
    print(
        f"  {model.num_parameters():,} parameters, {cfg.layers} layers, receptive field {rf} samples; "
        f"{args.seconds:g} s = {T} samples at {cfg.sample_rate} Hz, batch {args.batch}"
    )
    print(
        f"  torch {torch.__version__}, {torch.get_num_threads()} thread(s), {platform.processor() or platform.machine()}"
    )
    print()
    print(f"  {'method':<10} {'steps timed':>22} {'seconds':>9} {'samples/s':>11} {'x real time':>12}")
    print(
        f"  {'cached':<10} {f'{T} (all)':>22} {cached_s:>9.2f} {cached_sps:>11.1f} {cached_sps / cfg.sample_rate:>12.4f}"
    )
    naive_label = f"{k} of {T} (full RF)"
    print(
        f"  {'naive':<10} {naive_label:>22} {naive_s:>9.2f} {naive_sps:>11.2f} {naive_sps / cfg.sample_rate:>12.6f}"
    )
    print()
    print(f"  speed-up cached / naive: {cached_sps / naive_sps:.1f}x")
    print(f"  naive over all {T} steps would take ~{args.batch * T / naive_sps / 60:.1f} min (extrapolated)")
    print(f"  max |mean(naive) - mean(cached)| over the timed steps: {max_diff:.2e}")


if __name__ == "__main__":
    main()
