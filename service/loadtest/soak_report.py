"""The soak's verdict and report (:mod:`service.loadtest.soak`): :func:`summarize` over the waves, then
``waves.tsv``, ``soak.json``, ``README.md`` and ``rss.png`` (the files written as the sweep's are,
:func:`service.loadtest.report.write_files`)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from service.loadtest import hardware
from service.loadtest.report import write_files

if TYPE_CHECKING:
    from service.loadtest.soak_plan import SoakConfig


def summarize(
    waves: list[dict[str, Any]], problems: list[dict[str, Any]], statuses: Mapping[str, int], c: SoakConfig
) -> dict[str, Any]:
    """The verdict over the waves (``waves[0]`` is the reading before any request)."""
    measured = [w for w in waves if w["wave"] > 0]
    key = "rss_mb" if waves[0]["rss_mb"] is not None else "cgroup_mb"
    base_wave = min(c.warmup_waves, len(measured))
    base = waves[base_wave][key] if measured else None
    after = [w[key] for w in measured if w["wave"] >= base_wave]
    final = measured[-1][key] if measured else None
    growth = None if not base or final is None else round(100.0 * (final - base) / base, 2)
    peak_growth = None if not base or not after else round(100.0 * (max(after) - base) / base, 2)
    requests = measured[-1]["requests"] if measured else 0
    s = {
        "requests": requests,
        "waves": len(measured),
        "elapsed_s": measured[-1]["elapsed_s"] if measured else 0.0,
        "memory": key,
        "start_mb": waves[0][key],
        "warmup_waves": base_wave,
        "after_warmup_mb": base,
        "final_mb": final,
        "peak_mb": max((w[key] for w in waves if w[key] is not None), default=None),
        "growth_after_warmup_pct": growth,
        "peak_growth_after_warmup_pct": peak_growth,
        "status_5xx": sum(w["status_5xx"] for w in measured),
        "problems": len(problems),
        "not_ready": sum(w["not_ready"] for w in measured),
        "ready_probes": sum(w["ready_probes"] for w in measured),
        "in_flight_not_settled": sum(w["in_flight_settled"] != 0 for w in measured),
        "aborted": sum(w["aborted"] for w in measured),
        "malformed": sum(w["malformed"] for w in measured),
        "statuses": dict(sorted(statuses.items())),
    }
    s["passed"] = bool(
        measured
        and s["status_5xx"] == 0
        and s["problems"] == 0
        and s["not_ready"] == 0
        and s["in_flight_not_settled"] == 0
        and growth is not None
        and growth < c.max_growth_pct
    )
    return s


TSV_COLUMNS = (
    "wave",
    "requests",
    "elapsed_s",
    "rss_mb",
    "cgroup_mb",
    "heap_in_use_mb",
    "heap_free_mb",
    "ok",
    "aborted",
    "malformed",
    "status_4xx",
    "status_5xx",
    "problems",
    "ready_probes",
    "not_ready",
    "in_flight_end",
    "in_flight_settled",
    "settle_s",
)


def wave_line(w: dict[str, Any]) -> str:
    mem = f"RSS {w['rss_mb']} MiB" if w["rss_mb"] is not None else f"cgroup {w['cgroup_mb']} MiB"
    if w.get("heap_in_use_mb") is not None:
        mem += f" (C heap in use {w['heap_in_use_mb']}, free {w['heap_free_mb']})"
    return (
        f"wave {w['wave']:>4}: {w['requests']:>6} requests, {w['elapsed_s']:>8.1f} s, {mem}, "
        f"5xx {w['status_5xx']}, problems {w['problems']}, not ready {w['not_ready']}/{w['ready_probes']}, "
        f"in flight {w['in_flight_end']} -> {w['in_flight_settled']}"
    )


def render_markdown(report: dict[str, Any], command: str | None = None) -> str:
    c, s = report["config"], report["summary"]
    verdict = "PASS" if s["passed"] else "FAIL"
    lines = [
        f"# parawave memory soak: {verdict}",
        "",
        f"- server: {report['server']['url']} ({report['server']['memory']}), voices {report['server'].get('voices')}",
        f"- hardware: {hardware.summary(report['hardware'])}",
        f"- mix: waves of {c['concurrency']}, formats {', '.join(c['formats'])}, models "
        f"{', '.join(c['models'])}, {c['stream_fraction']:.0%} streamed ({c['sse_fraction']:.0%} of them SSE, "
        f"{c['abort_fraction']:.0%} abandoned at 0..{c['abort_max_bytes']} bytes), "
        f"{c['malformed_fraction']:.0%} malformed; seed {c['seed']}",
        f"- started {report['started_at']}, finished {report['finished_at']}",
    ]
    if command:
        lines.append(f"- command: `{command}`")
    lines += [
        "",
        f"| requests | waves | time | {s['memory']} start | after {s['warmup_waves']} warm-up waves | final "
        "| peak | growth after warm-up | 5xx | problems | not ready | in flight not back to 0 | aborted | malformed |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {s['requests']} | {s['waves']} | {s['elapsed_s']:.0f} s | {s['start_mb']} MiB | {s['after_warmup_mb']} MiB "
        f"| {s['final_mb']} MiB | {s['peak_mb']} MiB | {s['growth_after_warmup_pct']} % "
        f"(peak {s['peak_growth_after_warmup_pct']} %) | {s['status_5xx']} | {s['problems']} "
        f"| {s['not_ready']}/{s['ready_probes']} | {s['in_flight_not_settled']} | {s['aborted']} | {s['malformed']} |",
        "",
        f"Bound: growth after warm-up < {c['max_growth_pct']:g} %; statuses seen: "
        + ", ".join(f"{k}: {v}" for k, v in s["statuses"].items()),
        "",
        "Per wave: `waves.tsv`; plot: `rss.png`.",
    ]
    if report["problems"]:
        lines += ["", "First problems:", ""]
        lines += [
            f"- wave {p['wave']} #{p['index']} {p['mode']} {p['what']}: {p['problem']}"
            for p in report["problems"][:10]
        ]
    return "\n".join(lines) + "\n"


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    waves, s = report["waves"], report["summary"]
    xs = [w["requests"] for w in waves]
    fig, ax = plt.subplots(figsize=(9, 4.2), constrained_layout=True)
    if any(w["rss_mb"] is not None for w in waves):
        ax.plot(xs, [w["rss_mb"] for w in waves], "-o", ms=3, label="server RSS")
    if any(w["cgroup_mb"] is not None for w in waves):
        ax.plot(xs, [w["cgroup_mb"] for w in waves], "-s", ms=3, label="cgroup memory.current")
    if any(w.get("heap_in_use_mb") is not None for w in waves):
        ax.plot(xs, [w.get("heap_in_use_mb") for w in waves], "-", lw=1, label="C heap in use (mallinfo2)")
        ax.plot(xs, [w.get("heap_free_mb") for w in waves], "--", lw=1, label="C heap free, kept (mallinfo2)")
    base = s["after_warmup_mb"]
    if base:
        bound = base * (1 + report["config"]["max_growth_pct"] / 100)
        ax.axhline(
            bound, color="grey", linestyle=":", label=f"+{report['config']['max_growth_pct']:g} % bound"
        )
        ax.axvline(
            waves[s["warmup_waves"]]["requests"], color="grey", linestyle="--", lw=0.8, label="end of warm-up"
        )
    ax.set(
        xlabel="requests sent",
        ylabel="MiB",
        title=f"parawave soak: {s['requests']} requests, {s['waves']} waves",
    )
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(report: dict[str, Any], out: Path, command: str | None = None) -> dict[str, Path]:
    """soak.json, waves.tsv, README.md and (when matplotlib is installed) rss.png in ``out``."""
    rows = ["\t".join(TSV_COLUMNS)]
    rows += ["\t".join("" if w[k] is None else str(w[k]) for k in TSV_COLUMNS) for w in report["waves"]]
    return write_files(
        out,
        {
            "json": ("soak.json", json.dumps({**report, "command": command}, indent=2) + "\n"),
            "tsv": ("waves.tsv", "\n".join(rows) + "\n"),
            "markdown": ("README.md", render_markdown(report, command)),
            "png": ("rss.png", lambda path: plot(report, path)),
        },
    )
