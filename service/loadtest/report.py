"""Write a sweep report: ``report.json``, ``report.md`` (a table) and ``report.png`` (a plot).

``python -m service.loadtest.report DIR/report.json`` re-renders the markdown and the plot from a
saved JSON (e.g. after copying a GPU run's JSON back).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import typer

from service.loadtest import hardware

log = logging.getLogger(__name__)


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.0f}" if value >= 100 else f"{value:.1f}"


def _errors(errors: dict[str, int]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in errors.items()) or "0"


def level_line(level: dict[str, Any]) -> str:
    """One progress line per level."""
    t, lat = level["ttfa_ms"], level["latency_ms"]
    return (
        f"concurrency {level['concurrency']:>3}: {level['ok']}/{level['requests']} ok, "
        f"{level['requests_per_s']:.2f} req/s, TTFA p50/p95 {_ms(t['p50'])}/{_ms(t['p95'])} ms, "
        f"latency p50/p95 {_ms(lat['p50'])}/{_ms(lat['p95'])} ms, "
        f"{level['rt_multiple']:.2f}x real time, errors {_errors(level['errors'])}"
    )


def render_markdown(report: dict[str, Any]) -> str:
    c, server = report["config"], report["server"]
    stream = "streamed" if c["stream"] else "whole responses"
    lines = [
        f"# parawave load sweep: {server['model']} on {server['provider']}",
        "",
        f"- server: {server['url']}, `POST {c['path']}` ({server['model']} on {server['provider']}), "
        f"{c['response_format']}, {stream}",
        f"- hardware: {hardware.summary(report['hardware'])}",
        f"- each level: {c['duration_s']:g} s closed loop after {c['warmup_s']:g} s warm-up; "
        f"{report['texts']} sentences (seed {c['seed']})",
        f"- started {report['started_at']}, finished {report['finished_at']}",
    ]
    if report.get("stopped"):
        s = report["stopped"]
        lines.append(f"- stopped at concurrency {s['at_concurrency']}: {s['reason']}")
    lines += [
        "",
        "Times in ms. TTFA = time to first audio byte. RT multiple = audio seconds produced per "
        "wall-clock second (all requests together).",
        "",
        "| concurrency | requests | ok | req/s | TTFA p50 | TTFA p95 | TTFA p99 | latency p50 | latency p95 "
        "| latency p99 | RT multiple | errors |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for lv in report["levels"]:
        t, lat = lv["ttfa_ms"], lv["latency_ms"]
        lines.append(
            f"| {lv['concurrency']} | {lv['requests']} | {lv['ok']} | {lv['requests_per_s']:.2f} "
            f"| {_ms(t['p50'])} | {_ms(t['p95'])} | {_ms(t['p99'])} "
            f"| {_ms(lat['p50'])} | {_ms(lat['p95'])} | {_ms(lat['p99'])} "
            f"| {lv['rt_multiple']:.2f} | {_errors(lv['errors'])} |"
        )
    return "\n".join(lines) + "\n"


def plot(report: dict[str, Any], path: Path) -> None:
    """Latency (TTFA and full, p50 and p95) and throughput (req/s, RT multiple) vs concurrency."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = report["levels"]
    xs = [lv["concurrency"] for lv in levels]
    fig, (ax_lat, ax_tp) = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    series = [
        ("ttfa_ms", "p50", "TTFA p50", "-o"),
        ("ttfa_ms", "p95", "TTFA p95", "--o"),
        ("latency_ms", "p50", "latency p50", "-s"),
        ("latency_ms", "p95", "latency p95", "--s"),
    ]
    for key, q, label, style in series:
        ys = [lv[key][q] if lv[key][q] is not None else float("nan") for lv in levels]
        ax_lat.plot(xs, ys, style, label=label)
    bound = report["config"].get("stop_when_ttfa_p95_ms")
    if bound:
        ax_lat.axhline(bound, color="grey", linestyle=":", label=f"TTFA bound {bound:g} ms")
    ax_lat.set(xlabel="concurrency", ylabel="ms", title="Latency")
    ax_lat.legend(fontsize="small")
    ax_tp.plot(xs, [lv["requests_per_s"] for lv in levels], "-o", color="tab:blue", label="requests/s")
    ax_tp.set(xlabel="concurrency", title="Throughput")
    ax_tp.set_ylabel("requests/s", color="tab:blue")
    ax_rt = ax_tp.twinx()
    ax_rt.plot(xs, [lv["rt_multiple"] for lv in levels], "--s", color="tab:red", label="RT multiple")
    ax_rt.set_ylabel("audio s / wall s", color="tab:red")
    ax_tp.legend(handles=ax_tp.get_lines() + ax_rt.get_lines(), fontsize="small", loc="upper left")
    for ax in (ax_lat, ax_tp):
        ax.set_xscale("log", base=2)
        ax.set_xticks(xs, [str(x) for x in xs])
        ax.grid(True, alpha=0.3)
    server = report["server"]
    fig.suptitle(
        f"parawave {server['model']} on {server['provider']} — {hardware.summary(report['hardware'])}",
        fontsize="medium",
    )
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_files(out: Path, files: Mapping[str, tuple[str, str | Callable[[Path], None]]]) -> dict[str, Path]:
    """``files``: kind -> (file name, its text or a function that writes it, e.g. a plot) -> kind ->
    path of each file written into ``out``, in order. A writer that needs matplotlib is skipped with a
    warning when it is not installed (the ``load`` extra)."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for kind, (name, content) in files.items():
        path = out / name
        if isinstance(content, str):
            path.write_text(content)
        else:
            try:
                content(path)
            except ImportError:
                log.warning("matplotlib is not installed: no %s (pip install -e '.[load]')", name)
                continue
        paths[kind] = path
    return paths


def write_report(report: dict[str, Any], out: Path) -> dict[str, Path]:
    """report.json, report.md and (when matplotlib is installed) report.png in ``out``."""
    return write_files(
        out,
        {
            "json": ("report.json", json.dumps(report, indent=2) + "\n"),
            "markdown": ("report.md", render_markdown(report)),
            "png": ("report.png", lambda path: plot(report, path)),
        },
    )


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        typer.echo("usage: python -m service.loadtest.report DIR/report.json", err=True)
        return 2
    path = Path(args[0])
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        typer.echo(f"error: cannot read {path}: {exc}", err=True)
        return 2
    for p in write_report(report, path.parent).values():
        typer.echo(str(p))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
