"""Teachers' validation NLL against samples seen, several runs on one plot:
``python -m evaluation.nll_plot LABEL=nll.tsv ... --out FILE.png``.

Each ``nll.tsv`` is the learning-curve record ``python -m evaluation.curve`` writes (step,
samples_seen, val_nll, logged_at). The x axis is samples seen (log scale), which does not depend on
how much of the machine a run had, so arms that ran side by side, and the campaign that ran alone,
compare on it. Prints, for every step the first run logged, each run's NLL at the nearest logged
step at or below the same samples seen (a markdown table).
"""

from __future__ import annotations

import argparse
import bisect
import csv
from pathlib import Path


def read_nll(path: Path) -> list[tuple[int, float]]:
    """(samples seen, validation NLL) rows of an ``nll.tsv``, in order of samples seen."""
    with open(path, newline="") as f:
        rows = [(int(r["samples_seen"]), float(r["val_nll"])) for r in csv.DictReader(f, delimiter="\t")]
    return sorted(rows)


def at_or_below(rows: list[tuple[int, float]], samples: int) -> float | None:
    """The NLL logged at the largest samples seen <= ``samples`` (None before the first row)."""
    i = bisect.bisect_right([s for s, _ in rows], samples)
    return rows[i - 1][1] if i else None


def parse_run(text: str) -> tuple[str, Path]:
    label, sep, path = text.partition("=")
    if not sep or not label or not path:
        raise argparse.ArgumentTypeError(f"expected LABEL=PATH/nll.tsv, got {text!r}")
    return label, Path(path)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=parse_run, help="LABEL=path/to/nll.tsv")
    p.add_argument("--out", type=Path, required=True, help="the plot (.png)")
    args = p.parse_args(argv)
    curves = {}
    for label, path in args.runs:
        if not path.is_file():
            p.error(f"{path}: not found")
        curves[label] = read_nll(path)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for label, rows in curves.items():
        ax.plot([s for s, _ in rows], [v for _, v in rows], marker=".", label=label)
    ax.set_xscale("log")
    ax.set_xlabel("samples seen")
    ax.set_ylabel("validation NLL (nats per sample)")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)

    labels = list(curves)
    lines = ["| samples seen | " + " | ".join(labels) + " |", "|---:|" + "---:|" * len(labels)]
    for samples, _ in curves[labels[0]]:
        cells = [at_or_below(curves[label], samples) for label in labels]
        lines.append(
            f"| {samples / 1e6:.0f}M | " + " | ".join("—" if c is None else f"{c:.3f}" for c in cells) + " |"
        )
    print("\n".join(lines))  # the table is the output


if __name__ == "__main__":
    main()
