"""Aggregation and the report of ``parawave eval``: per-system, per-speaker and paired
student/teacher numbers over the clips, the acceptance targets, ``eval.md`` and JSON-safe values."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from evaluation.clips import ClipResult
from evaluation.metrics import duration_stats, nanmean, wer_of

SYSTEMS = ("reference", "student", "teacher")
# targets (eval.md): student WER within this of the reference's; vocoder quality floors
TARGET_WER_DELTA = 0.03
TARGET_PESQ = 3.5
TARGET_STOI = 0.95
TARGET_PESQ_GAP = 0.2  # student within this much PESQ of the teacher
TARGET_HNR_GAP = 2.0  # served voice HNR within this many dB of the recordings (issue 17 goal; 3 dB required)


def summarize_system(results: Sequence[ClipResult], system: str) -> dict[str, Any]:
    """Numbers of one system over the clips it ran on."""
    rs = [r for r in results if system in r.transcripts]
    out: dict[str, Any] = {
        "clips": len(rs),
        "wer": wer_of([r.reference_text for r in rs], [r.transcripts[system] for r in rs]),
        "hnr_db": nanmean(r.hnr.get(system, math.nan) for r in rs),  # text->audio (reference: the recording)
    }
    if system == "reference":
        return out
    for key in ("pesq_wb", "stoi", "mcd_db", "hnr_db", "f0_rmse_cents", "f0_bias_cents", "voicing_error"):
        out["copy_" + key if key == "hnr_db" else key] = nanmean(
            r.copy[system].get(key, math.nan) for r in rs
        )
    with_copy = [r for r in rs if system in r.copy_transcripts]
    out["copy_wer"] = (
        wer_of([r.reference_text for r in with_copy], [r.copy_transcripts[system] for r in with_copy])
        if with_copy
        else math.nan
    )
    out["durations"] = duration_stats([r.tts_seconds[system] for r in rs], [r.reference_seconds for r in rs])
    audio_s = sum(r.tts_seconds[system] for r in rs)
    out["rtf"] = sum(r.tts_wall_seconds[system] for r in rs) / audio_s if audio_s else math.nan
    return out


def summarize(results: Sequence[ClipResult], systems: Sequence[str]) -> dict[str, Any]:
    """Per system (all its clips), per speaker, and the paired student/teacher comparison."""
    by_system = {s: summarize_system(results, s) for s in systems}
    speakers = sorted({r.speaker for r in results})
    by_speaker = {
        spk: {s: summarize_system([r for r in results if r.speaker == spk], s) for s in systems}
        for spk in speakers
    }
    out: dict[str, Any] = {"systems": by_system, "speakers": by_speaker}
    if "teacher" in systems:  # the same clips for both sides of a comparison
        paired = [r for r in results if r.teacher]
        out["teacher_clips"] = {s: summarize_system(paired, s) for s in systems}
    return out


def targets(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The acceptance targets: name, value, goal, pass (None when it could not be measured)."""
    sysm = summary["systems"]
    student, ref = sysm.get("student"), sysm["reference"]
    out: list[dict[str, Any]] = []

    def add(name: str, value: float, goal: str, ok: bool) -> None:
        out.append({"name": name, "value": value, "goal": goal, "pass": None if math.isnan(value) else ok})

    if student is not None:
        delta = student["wer"] - ref["wer"]
        add("student WER - reference WER", delta, f"<= {TARGET_WER_DELTA}", delta <= TARGET_WER_DELTA)
        add("student PESQ-WB", student["pesq_wb"], f">= {TARGET_PESQ}", student["pesq_wb"] >= TARGET_PESQ)
        add("student STOI", student["stoi"], f">= {TARGET_STOI}", student["stoi"] >= TARGET_STOI)
        gap = abs(student["hnr_db"] - ref["hnr_db"])
        add(
            "|student HNR - reference HNR| (text->audio, dB)",
            gap,
            f"<= {TARGET_HNR_GAP}",
            gap <= TARGET_HNR_GAP,
        )
    paired = summary.get("teacher_clips")
    if student is not None and paired is not None:
        gap = paired["teacher"]["pesq_wb"] - paired["student"]["pesq_wb"]
        add(
            f"teacher PESQ-WB - student PESQ-WB ({paired['teacher']['clips']} teacher clips)",
            gap, f"<= {TARGET_PESQ_GAP}", gap <= TARGET_PESQ_GAP,
        )  # fmt: skip
    return out


def _fmt(x: Any, spec: str = ".3f") -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    return format(x, spec)


def render_markdown(report: dict[str, Any]) -> str:
    """eval.md: the summary table, the targets and the per-speaker table."""
    cfg, summary = report["config"], report["summary"]
    systems = [s for s in SYSTEMS if s in summary["systems"]]
    lines = [
        f"# parawave eval: voice `{cfg['voice']}` on `{cfg['corpus']}` ({cfg['split']} split)",
        "",
        "| system | clips | WER | HNR (dB) | copy WER | PESQ-WB | STOI | MCD (dB) | copy HNR (dB) "
        "| copy F0 error (cents) | copy voicing error | duration error |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in systems:
        m = summary["systems"][s]
        dur = "—"
        if s == "student":
            d = m["durations"]
            dur = f"{_fmt(100 * d['mean_abs_rel_error'], '.1f')} % ({_fmt(100 * d['within_15pct'], '.0f')} % within 15 %)"
        lines.append(
            f"| {s} | {m['clips']} | {_fmt(m['wer'])} | {_fmt(m.get('hnr_db'), '.1f')} | "
            f"{_fmt(m.get('copy_wer'))} | {_fmt(m.get('pesq_wb'), '.2f')} | {_fmt(m.get('stoi'))} | {_fmt(m.get('mcd_db'), '.2f')} | "
            f"{_fmt(m.get('copy_hnr_db'), '.1f')} | {_fmt(m.get('f0_rmse_cents'), '.0f')} | "
            f"{_fmt(m.get('voicing_error'))} | {dur} |"
        )
    lines += [
        "",
        "WER: pocketsphinx (en-us) transcripts vs the corpus's normalized text, pooled over clips. "
        "HNR: Praat's harmonics-to-noise ratio (parselmouth, cross-correlation, mean over measurable "
        "frames) of the text->audio output (reference: the recording). "
        "Copy WER, PESQ-WB, STOI, MCD, copy HNR / F0 error / voicing error: copy synthesis from the recording's mel "
        "(and its Praat F0 for the vocoders' excitation); F0 error: RMS cents on frames voiced in both. "
        "Duration error: mean |relative error| of the text->audio length.",
    ]
    if "teacher_clips" in summary:
        p = summary["teacher_clips"]
        lines.append(
            f"On the {p['teacher']['clips']} teacher clips: WER reference {_fmt(p['reference']['wer'])}, "
            f"student {_fmt(p['student']['wer'])}, teacher {_fmt(p['teacher']['wer'])}; "
            f"PESQ-WB student {_fmt(p['student']['pesq_wb'], '.2f')}, teacher {_fmt(p['teacher']['pesq_wb'], '.2f')}."
        )
    speed = summary["systems"].get("student", {}).get("rtf")
    if speed is not None:
        t = summary["systems"].get("teacher", {}).get("rtf")
        lines.append(
            f"Speed (text->audio, wall s per audio s, {cfg['device']}): student {_fmt(speed)}"
            + (f", teacher {_fmt(t)}" if t is not None else "")
            + "."
        )
    lines += ["", "Targets:", ""]
    for t in report["targets"]:
        mark = {True: "PASS", False: "FAIL", None: "n/a"}[t["pass"]]
        lines.append(f"- **{mark}** {t['name']} = {_fmt(t['value'])} (target {t['goal']})")
    if "teacher" not in systems:
        lines.append("- **n/a** student within 0.2 PESQ-WB of the teacher (no teacher run)")
    lines += [
        "",
        "Per speaker:",
        "",
        "| speaker | system | clips | WER | PESQ-WB | STOI | MCD (dB) | duration error |",
    ]
    lines.append("|---|---|---:|---:|---:|---:|---:|---:|")
    for spk, per in summary["speakers"].items():
        for s in systems:
            m = per[s]
            d = m.get("durations")
            dur = f"{_fmt(100 * d['mean_abs_rel_error'], '.1f')} %" if s == "student" and d else "—"
            lines.append(
                f"| {spk} | {s} | {m['clips']} | {_fmt(m['wer'])} | {_fmt(m.get('pesq_wb'), '.2f')} | "
                f"{_fmt(m.get('stoi'))} | {_fmt(m.get('mcd_db'), '.2f')} | {dur} |"
            )
    return "\n".join(lines) + "\n"


def json_safe(x: Any) -> Any:
    if isinstance(x, float):
        return None if math.isnan(x) or math.isinf(x) else x
    if isinstance(x, dict):
        return {k: json_safe(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [json_safe(v) for v in x]
    return x
