"""Teacher training on today's path vs the fast path, same seed, same data: do the losses agree?

    python -m bench.train_equivalence --data CORPUS [--steps 300] [--preset cpu] [--every 25]
                                            [--work DIR] [--out bench/results/train_equivalence.txt]

Runs ``parawave train teacher`` twice in this process from the same seed (same initial weights,
same batches): ``old`` = fp32 eager, ``new`` = the fast path (``precision=bf16`` where the CPU has it,
``compile=true``). Both run the trainer's channels-last stack (``model.wavenet.Layout``): in fp32 it
computes the products of the (B, C, T) Conv1d reference (``tests/model/test_wavenet.py`` holds them
equal), so ``old`` is the reference's loss curve, not its speed (``bench.train_speed`` times
the reference layout). Results written before the layout became a parameter ran ``old`` on the Conv1d
modules themselves.
Prints the training NLL (nats per sample) of both every ``--every`` steps, as the mean over that
window (single steps are noisy: random windows), their difference, the final validation NLL and
the wall time of each run (the new one includes its compilation).
"""

from __future__ import annotations

import argparse
import logging
import shutil
import statistics
import time
from pathlib import Path

from model.train.config import TrainArgs

log = logging.getLogger(__name__)


def run(data: Path, out: Path, preset: str, steps: int, sets: tuple[str, ...]) -> dict:
    from model.train.teacher import train

    if out.exists():
        shutil.rmtree(out)
    common = (
        f"steps={steps}",
        "warmup_steps=50",
        "val_every=0",
        "sample_every=-1",
        "checkpoint_minutes=1000",
    )
    args = TrainArgs(data=data, out=out, preset=preset, sets=common + sets)
    t0 = time.perf_counter()
    summary = train(args)
    summary["wall_s"] = time.perf_counter() - t0
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--every", type=int, default=25)
    parser.add_argument("--work", type=Path, default=Path("/tmp/train_equivalence"))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    old = run(
        args.data,
        args.work / "old",
        args.preset,
        args.steps,
        ("precision=fp32", "compile=false"),
    )
    new = run(args.data, args.work / "new", args.preset, args.steps, ("precision=bf16", "compile=true"))
    lo = [loss for _, loss in old["history"]]
    ln = [loss for _, loss in new["history"]]
    lines = [
        f"teacher '{args.preset}' preset, {args.steps} steps from the same seed on {args.data}",
        "old = fp32, eager;  new = bf16 autocast, torch.compile (both channels-last)",
        f"training NLL (nats/sample), mean over each window of {args.every} steps",
        "",
        f"{'steps':>9} {'old':>9} {'new':>9} {'new-old':>9}",
    ]
    for start in range(0, min(len(lo), len(ln)), args.every):
        a = statistics.fmean(lo[start : start + args.every])
        b = statistics.fmean(ln[start : start + args.every])
        lines.append(f"{start + 1:>4}-{start + args.every:<4} {a:9.4f} {b:9.4f} {b - a:+9.4f}")
    lines += [
        "",
        f"final val NLL   old {old['val'].get('loss', float('nan')):.4f}   new {new['val'].get('loss', float('nan')):.4f}",
        f"wall time       old {old['wall_s']:.0f} s   new {new['wall_s']:.0f} s (compilation included)",
    ]
    print("\n".join(lines))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
