"""Loss curves of several training runs side by side, from their TensorBoard logs:
``python -m evaluation.runs_curves RUN_DIR... --out FOLDER [--tags val/stft,val/kl,train/stft]``.

Writes ``curves.csv`` (run, tag, step, cpu_minutes, value; ``cpu_minutes`` from the run's
``train/cpu_seconds`` scalar at the nearest logged step, blank when the run did not log it) and
``curves.png`` (one panel per tag, x = CPU minutes when every run logged them, else steps), and
prints a markdown table of each tag's last value per run.
"""

from __future__ import annotations

import argparse
import bisect
import csv
from pathlib import Path


def read_scalars(run: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tb = EventAccumulator(str(run / "tb"), size_guidance={"scalars": 0}).Reload()
    return {tag: [(e.step, float(e.value)) for e in tb.Scalars(tag)] for tag in tb.Tags()["scalars"]}


def cpu_minutes_at(cpu: list[tuple[int, float]], step: int) -> float | None:
    """CPU minutes at ``step`` from the (step, cpu seconds) log: the nearest logged step at or after it
    (else the last)."""
    if not cpu:
        return None
    steps = [s for s, _ in cpu]
    i = min(bisect.bisect_left(steps, step), len(cpu) - 1)
    return cpu[i][1] / 60.0


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--tags", default="val/stft,val/kl,train/stft,train/d_loss,train/adv,train/fm")
    args = p.parse_args(argv)
    tags = [t for t in args.tags.split(",") if t]
    args.out.mkdir(parents=True, exist_ok=True)
    data = {run.name: read_scalars(run) for run in args.runs}
    rows = []
    for name, scalars in data.items():
        cpu = scalars.get("train/cpu_seconds", [])
        for tag in tags:
            for step, value in scalars.get(tag, []):
                rows.append((name, tag, step, cpu_minutes_at(cpu, step), value))
    with (args.out / "curves.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["run", "tag", "step", "cpu_minutes", "value"])
        for name, tag, step, minutes, value in rows:
            w.writerow([name, tag, step, "" if minutes is None else f"{minutes:.2f}", f"{value:.5g}"])
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    present = [t for t in tags if any(t in s for s in data.values())]
    by_cpu = all("train/cpu_seconds" in s for s in data.values())
    fig, axes = plt.subplots(len(present), 1, figsize=(7, 2.4 * len(present)), squeeze=False)
    for ax, tag in zip(axes[:, 0], present, strict=True):
        for i, name in enumerate(data):  # one colour per run in every panel
            pts = [(m if by_cpu else s, v) for n, t, s, m, v in rows if n == name and t == tag]
            if pts:
                ax.plot(*zip(*pts, strict=True), label=name, lw=1, color=f"C{i}", marker=".", ms=3)
        ax.set_ylabel(tag, fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    axes[-1, 0].set_xlabel("CPU minutes (training process)" if by_cpu else "step")
    fig.tight_layout()
    fig.savefig(args.out / "curves.png", dpi=90)
    print("| run | " + " | ".join(f"last {t}" for t in present) + " |")
    print("|---|" + "---:|" * len(present))
    for name, scalars in data.items():
        cells = [f"{scalars[t][-1][1]:.4f}" if t in scalars else "—" for t in present]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
