"""Step time of the student's adversarial training step on this CPU, per discriminator size (issue 37):
``python -m bench.gan_step --init recipes/checkpoints/cpu/student.pt [--steps 20] [--threads 1]``.

One step = the student's forward on a batch of 4 x 4,000 samples (the cpu preset's windows), the
multi-resolution STFT loss, one discriminator update on (real, detached fake) and the student's
adversarial + feature-matching pass through the frozen discriminators, the student's backward and
both Adam steps; the "none" row is the same without discriminators (today's spectral-only step).
Random audio / mel / excitation stand in for a batch (the cost does not depend on the values).
Prints ms/step (median of ``--steps`` timed steps after 3 warm-up steps, compile included there).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def _step_fn(g, student, disc, stft, precision: str, compile_: bool):
    from model.losses import feature_matching_loss, lsgan_discriminator_loss, lsgan_generator_loss
    from model.train.precision import autocast_context, compile_module

    device = torch.device("cpu")
    d = compile_module(disc, device, compile_, dynamic=False) if disc is not None else None
    g_opt = torch.optim.Adam(student.parameters(), lr=1e-4)
    d_opt = torch.optim.Adam(disc.parameters(), lr=2e-4, betas=(0.8, 0.99)) if disc is not None else None

    def step(batch):
        audio, mel, spk, exc = batch
        with autocast_context(device, precision):
            z = torch.randn_like(audio)
            x = g(z, mel, spk, excitation=exc)  # (B, T)
            loss = stft(x, audio)["loss"]
            if d is not None:
                disc.requires_grad_(True)
                b = audio.shape[0]
                scores, feats = d(torch.cat([audio, x.detach()]))
                r, f = lsgan_discriminator_loss([s[:b] for s in scores], [s[b:] for s in scores])
                d_opt.zero_grad(set_to_none=True)
                with torch.autocast("cpu", enabled=False):
                    (r + f).backward()
                d_opt.step()
                disc.requires_grad_(False)
                fs, ff = d(x)
                real = [[t[:b].detach() for t in fl] for fl in feats]
                loss = loss + lsgan_generator_loss(fs) + 2.0 * feature_matching_loss(real, ff)
        g_opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        g_opt.step()

    return step


def main(argv: list[str] | None = None) -> None:
    from model.discriminators import DiscConfig, MultiDiscriminator
    from model.losses import MultiResolutionSTFTLoss
    from model.student import StudentConfig, StudentIAF

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--init", required=True, help="student checkpoint (its architecture)")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--configs",
        default="none,16,8,32",
        help="comma list: none | W (mpd+mrd at width W) | mpdW | mrdW, each optionally +eager (the "
        "discriminators uncompiled; the student is always compiled) / +fp32",
    )
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    ckpt = torch.load(args.init, map_location="cpu", weights_only=True)
    cfg = StudentConfig.from_dict(ckpt["config"]["model"])
    b, t = 4, 4000
    gen = torch.Generator().manual_seed(0)
    batch = (
        0.1 * torch.randn(b, t, generator=gen),
        torch.randn(b, cfg.n_mels, t // cfg.hop_length, generator=gen) - 4.0,
        torch.zeros(b, dtype=torch.long),
        torch.randn(b, cfg.excitation_channels, t, generator=gen) if cfg.excitation_channels else None,
    )
    print(
        f"threads={args.threads} batch={b}x{t} student={sum(p.numel() for p in StudentIAF(cfg).parameters())} params"
    )
    from model.train.precision import compile_module

    student = StudentIAF(cfg)
    student.load_state_dict(ckpt["ema"])
    g = compile_module(student, torch.device("cpu"))  # one compiled student for every row
    for spec in args.configs.split(","):
        name, *flags = spec.split("+")
        precision = "fp32" if "fp32" in flags else "bf16"
        compile_ = "eager" not in flags
        disc = None
        if name != "none":
            kinds = (
                ("mpd",) if name.startswith("mpd") else ("mrd",) if name.startswith("mrd") else ("mpd", "mrd")
            )
            width = int(name.removeprefix("mpd").removeprefix("mrd"))
            disc = MultiDiscriminator(DiscConfig(kinds=kinds, mpd_channels=width, mrd_channels=width))
        stft = MultiResolutionSTFTLoss((1024, 512, 256))
        step = _step_fn(g, student, disc, stft, precision, compile_)
        t0 = time.perf_counter()
        for _ in range(3):
            step(batch)
        warm = time.perf_counter() - t0
        times = []
        c0 = time.process_time()
        for _ in range(args.steps):
            s = time.perf_counter()
            step(batch)
            times.append(time.perf_counter() - s)
        cpu = (time.process_time() - c0) / args.steps
        n_disc = sum(p.numel() for p in disc.parameters()) if disc is not None else 0
        print(
            f"{spec:>14}: {1000 * statistics.median(times):7.1f} ms/step wall (median of {args.steps}), "
            f"{1000 * cpu:7.1f} ms/step CPU, D params {n_disc}, first 3 steps {warm:.1f} s",
            flush=True,
        )


if __name__ == "__main__":
    main()
