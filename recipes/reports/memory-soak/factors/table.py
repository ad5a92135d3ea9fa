"""The per-factor table of recipes/reports/memory-soak/README.md from the runs' soak.json + malloc.tsv.

python recipes/reports/memory-soak/factors/table.py recipes/reports/memory-soak/factors mixed complete ...
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path


def options(command: str) -> str:
    """The run's own soak options (those after the common ones)."""
    words = command.split()
    keep, skip = [], False
    common = {"--serve", "--requests", "--concurrency", "--seed", "--out", "--timeout"}
    for i, w in enumerate(words[2:], start=2):
        if skip:
            skip = False
            continue
        if w in common:
            skip = w != "--serve"
            continue
        if w == "--server-env" and words[i + 1].split("=")[0] in ("PYTHONPATH", "MALLOC_PROBE_OUT"):
            skip = True
            continue
        keep.append(w)
    return " ".join(keep).replace("--server-env ", "") or "(the issue's mix)"


def main(root: Path, names: list[str]) -> None:
    print(
        "| run | options | requests | RSS start | after 3 waves | final | growth after warm-up "
        "| C heap in use (3 waves -> end) | C heap free, kept (3 waves -> end) | arenas | 5xx |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in names:
        run = root / name
        if not (run / "soak.json").exists():
            continue
        report = json.loads((run / "soak.json").read_text())
        s, waves = report["summary"], report["waves"]
        rows = list(csv.DictReader((run / "malloc.tsv").open(), delimiter="\t"))
        # the probe's clock starts with the server process, the soak's at its first request
        t0 = float(next((r for r in rows if float(r["rss_mb"]) > 200), rows[0])["t"])
        at3 = min(rows, key=lambda r: abs(float(r["t"]) - (t0 + waves[min(3, len(waves) - 1)]["elapsed_s"])))
        last = rows[-2] if len(rows) > 1 else rows[-1]
        print(
            f"| {name} | `{options(report.get('command') or '')}` | {s['requests']} | {s['start_mb']} "
            f"| {s['after_warmup_mb']} | {s['final_mb']} | {s['growth_after_warmup_pct']} % "
            f"| {at3['inuse_mb']} -> {last['inuse_mb']} | {at3['free_mb']} -> {last['free_mb']} "
            f"| {last['arenas']} | {s['status_5xx']} |"
        )


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:])
