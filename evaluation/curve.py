"""The teacher's learning-curve record: validation NLL per step, and at intervals its autoregressive
samples scored like the served voice (ASR WER, HNR, copy-synthesis PESQ-WB / STOI).

    python -m evaluation.curve --run runs/flite/teacher --out recipes/reports/teacher-curve \
        [--sample --acoustic A.pt --student S.pt --data data/flite --limit 1]

- ``nll.tsv``: every ``step N: val loss X`` line of ``RUN/train.log`` (all resumed runs), with the
  samples seen (step * batch * segment samples, from ``RUN/config.json``), merged into the rows the
  file already has (a fresh checkout's run folder only has the logs of the runs since: the older rows
  live in the committed file; a step in both keeps the log's line).
- ``samples.tsv`` (``--sample``): one row appended per call for ``RUN/checkpoints/last.pt``: the
  checkpoint is exported into a temporary voice bundle (with the given acoustic model and student)
  and :func:`evaluation.run.run_eval` scores the teacher on the first ``--limit`` validation clips per
  speaker (fixed clips, fixed seed: rows are comparable across steps). The reference recordings'
  WER and HNR are in the same row.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import re
import shutil
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

VAL_LINE = re.compile(r"^(\S+ \S+) INFO \S+: step (\d+): val loss (-?[\d.]+(?:e-?\d+)?)")
NLL_FIELDS = ("step", "samples_seen", "val_nll", "logged_at")
SAMPLE_FIELDS = (
    "step", "samples_seen", "clips", "teacher_wer", "reference_wer", "teacher_hnr_db", "reference_hnr_db",
    "copy_pesq_wb", "copy_stoi", "copy_hnr_db", "teacher_rtf",
)  # fmt: skip


class CurveError(Exception):
    """A run folder without what the record needs (one line for the CLI)."""


def samples_per_step(run: Path) -> int:
    """batch * segment samples of one training step, from the run's config.json."""
    try:
        cfg = json.loads((run / "config.json").read_text())
        train, audio = cfg["train"], cfg["audio"]
        return int(train["batch_size"]) * int(train["segment_frames"]) * int(audio["hop_length"])
    except (OSError, KeyError, ValueError) as exc:
        raise CurveError(f"{run}/config.json: {exc}") from exc


def val_rows(log_text: str, per_step: int) -> list[dict[str, str]]:
    """``step N: val loss X`` lines -> rows, one per step (a step logged twice by a resumed run keeps
    the later line)."""
    rows: dict[int, dict[str, str]] = {}
    for line in log_text.splitlines():
        m = VAL_LINE.match(line)
        if m:
            step = int(m.group(2))
            rows[step] = {
                "step": str(step),
                "samples_seen": str(step * per_step),
                "val_nll": m.group(3),
                "logged_at": m.group(1).split(",")[0],
            }
    return [rows[s] for s in sorted(rows)]


def merge_rows(old: list[dict[str, str]], new: list[dict[str, str]]) -> list[dict[str, str]]:
    """Rows of both, one per step in step order; ``new`` wins where both have a step."""
    by_step = {int(r["step"]): r for r in old} | {int(r["step"]): r for r in new}
    return [by_step[s] for s in sorted(by_step)]


def read_tsv(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return [dict(r) for r in csv.DictReader(f, delimiter="\t")]


def write_tsv(path: Path, fields, rows) -> None:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fields, delimiter="\t", lineterminator="\n")
        w.writeheader()
        w.writerows(rows)


def sample_row(
    run: Path, acoustic: Path, student: Path | None, data: Path, limit: int, seed: int, temperatures=()
) -> tuple[dict[str, str], list[str]]:
    """Export RUN's last checkpoint with the acoustic model and student; score its AR samples."""
    import torch

    from evaluation.errors import EvalError
    from evaluation.run import run_eval
    from export.bundle import ExportError, bundle_from_checkpoints
    from export.parity import ParityError

    ckpt = run / "checkpoints" / "last.pt"
    if not ckpt.is_file():
        raise CurveError(f"{ckpt}: no checkpoint")
    with tempfile.TemporaryDirectory(prefix="curve-") as tmp:
        ckpt = Path(
            shutil.copy(ckpt, Path(tmp) / "teacher.pt")
        )  # a snapshot: the trainer may rewrite last.pt
        step = int(torch.load(ckpt, map_location="cpu", weights_only=True)["step"])
        try:
            bundle, _, _ = bundle_from_checkpoints(
                tmp, "curve", acoustic=acoustic, student=student, teacher=ckpt
            )
            report = run_eval(
                bundle, data, Path(tmp) / "eval", split="val", limit=limit, teacher_limit=limit, seed=seed,
                progress=False,
            )  # fmt: skip
            table = temperature_table(bundle, data, limit, temperatures, seed) if temperatures else []
        except (ExportError, ParityError, EvalError) as exc:
            raise CurveError(str(exc)) from exc
    sysm = report["summary"]["teacher_clips"]
    t, r = sysm["teacher"], sysm["reference"]

    def num(x) -> str:
        return "" if x is None else f"{x:.4g}"

    return {
        "step": str(step),
        "samples_seen": str(step * samples_per_step(run)),
        "clips": str(t["clips"]),
        "teacher_wer": num(t["wer"]),
        "reference_wer": num(r["wer"]),
        "teacher_hnr_db": num(t["hnr_db"]),
        "reference_hnr_db": num(r["hnr_db"]),
        "copy_pesq_wb": num(t["pesq_wb"]),
        "copy_stoi": num(t["stoi"]),
        "copy_hnr_db": num(t["copy_hnr_db"]),
        "teacher_rtf": num(t["rtf"]),
    }, table


def copy_table(
    run: Path, acoustic: Path, student: Path | None, data: Path, limit: int, seed: int, temperatures
):
    """Without --sample: export RUN's last checkpoint and write only its copy-synthesis temperature
    table (no text->audio sampling): (step, lines). A quicker A/B of two runs' teachers."""
    import torch

    from evaluation.errors import EvalError
    from export.bundle import ExportError, bundle_from_checkpoints
    from export.parity import ParityError

    ckpt = run / "checkpoints" / "last.pt"
    if not ckpt.is_file():
        raise CurveError(f"{ckpt}: no checkpoint")
    with tempfile.TemporaryDirectory(prefix="curve-") as tmp:
        ckpt = Path(shutil.copy(ckpt, Path(tmp) / "teacher.pt"))  # a snapshot
        step = int(torch.load(ckpt, map_location="cpu", weights_only=True)["step"])
        try:
            bundle, _, _ = bundle_from_checkpoints(
                tmp, "curve", acoustic=acoustic, student=student, teacher=ckpt
            )
            return step, temperature_table(bundle, data, limit, temperatures, seed)
        except (ExportError, ParityError, EvalError) as exc:
            raise CurveError(str(exc)) from exc


def temperature_table(bundle: Path, data: Path, limit: int, temperatures, seed: int = 0) -> list[str]:
    """Copy synthesis (recording's mel + Praat F0) of the first ``limit`` validation clips per speaker
    by the bundle's teacher at each sampling temperature (noise = T * N(0, 1), the same draws per
    clip): mean HNR, PESQ-WB, STOI, F0 error (RMS and bias, cents, against the recording's Praat F0) and
    the pocketsphinx WER of the outputs, one line per temperature."""
    import dataclasses

    import numpy as np

    from evaluation.clips import clip_seed, select_clips
    from evaluation.copy_synthesis import copy_inputs, copy_scores, copy_synthesis
    from evaluation.metrics import transcribe, wer_of
    from evaluation.voices import load_voice
    from evaluation.voicing import hnr_db
    from model.data.config import AudioConfig
    from model.data.corpus import Corpus
    from model.data.features import load_clip_audio

    _, voice = load_voice(bundle, "cpu")
    cfg = AudioConfig.from_dict(dataclasses.asdict(voice.manifest.audio))
    chosen = select_clips(Corpus(data), "val", voice.speakers, limit, limit)
    inputs = [
        (c, *copy_inputs(load_clip_audio(data, c.id, cfg), cfg)) for c in chosen
    ]  # (clip, ref, mel, f0)
    lines = [
        f"recordings: HNR {np.mean([hnr_db(r, cfg.sample_rate) for _, r, _, _ in inputs]):.2f} dB ({len(inputs)} clips)"
    ]
    for t in temperatures:
        scores, hyps = [], []
        for c, ref, mel, f0 in inputs:
            spk = voice.speaker_id(c.voice_speaker)
            out = copy_synthesis(voice, mel, spk, "teacher", clip_seed(seed, c.id), f0, temperature=t)
            scores.append(copy_scores(ref, out, f0, cfg))
            hyps.append(transcribe(out, cfg.sample_rate))
        wer = wer_of([c.normalized for c, *_ in inputs], hyps)
        m = {k: [sc[k] for sc in scores] for k in scores[0]}
        lines.append(
            f"T={t:g}: HNR {np.mean(m['hnr_db']):.2f} PESQ {np.mean(m['pesq_wb']):.3f} STOI {np.mean(m['stoi']):.3f} "
            f"F0 {np.nanmean(m['f0_rmse_cents']):.0f} cents RMS, bias {np.nanmean(m['f0_bias_cents']):+.0f} WER {wer:.3f}"
        )
        log.info("%s", lines[-1])
    return lines


def append_row(path: Path, fields, row: dict[str, str]) -> None:
    new = not path.exists()
    with path.open("a", newline="") as f:
        w = csv.DictWriter(f, fields, delimiter="\t", lineterminator="\n")
        if new:
            w.writeheader()
        w.writerow(row)


def _temperatures(text: str | None) -> list[float]:
    if not text:
        return []
    try:
        temps = [float(t) for t in text.split(",")]
    except ValueError:
        raise CurveError(f"--temperatures: expected comma-separated numbers, got {text!r}") from None
    if any(not t > 0 for t in temps):
        raise CurveError(f"--temperatures must be > 0, got {text!r}")
    return temps


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", type=Path, required=True, help="Teacher run folder (train.log, config.json).")
    p.add_argument("--out", type=Path, required=True, help="Folder of nll.tsv and samples.tsv.")
    p.add_argument("--sample", action="store_true", help="Also score the last checkpoint's AR samples.")
    p.add_argument("--acoustic", type=Path, help="Acoustic checkpoint (text -> mel) for --sample.")
    p.add_argument(
        "--student", type=Path, help="Student checkpoint (optional) for --sample: scored beside the teacher."
    )
    p.add_argument("--data", type=Path, help="Corpus folder (its val split) for --sample.")
    p.add_argument("--limit", type=int, default=1, help="Validation clips per speaker (default 1).")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--temperatures", default=None,
        help="Copy-synthesise --limit-many validation clips per speaker at these sampling temperatures "
        "(comma-separated, e.g. 1,0.8,0.6) into temperature-stepN.txt: beside the --sample row, or "
        "alone (needs --acoustic and --data; no text->audio sampling).",
    )  # fmt: skip
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        train_log = args.run / "train.log"
        if not train_log.is_file():
            raise CurveError(f"{train_log}: no such file")
        args.out.mkdir(parents=True, exist_ok=True)
        logged = val_rows(train_log.read_text(errors="replace"), samples_per_step(args.run))
        rows = merge_rows(read_tsv(args.out / "nll.tsv"), logged)
        write_tsv(args.out / "nll.tsv", NLL_FIELDS, rows)
        log.info(
            "%s: %d validation rows (last: %s)", args.out / "nll.tsv", len(rows), rows[-1] if rows else None
        )
        temps = _temperatures(args.temperatures)
        if args.sample or temps:
            missing = [n for n in ("acoustic", "data") if getattr(args, n) is None]
            if missing:
                flag = "--sample" if args.sample else "--temperatures"
                raise CurveError(f"{flag} needs " + ", ".join("--" + n for n in missing))
        if args.sample:
            row, table = sample_row(
                args.run, args.acoustic, args.student, args.data, args.limit, args.seed, temps
            )
            append_row(args.out / "samples.tsv", SAMPLE_FIELDS, row)
            step = row["step"]
            log.info("%s: %s", args.out / "samples.tsv", row)
        elif temps:
            step, table = copy_table(
                args.run, args.acoustic, args.student, args.data, args.limit, args.seed, temps
            )
        if temps:
            head = (
                f"# teacher step {step}: copy synthesis (recording's mel + Praat F0) of validation clips "
                "at each sampling temperature, the same noise draws per clip (python -m evaluation.curve "
                "--temperatures)"
            )
            (args.out / f"temperature-step{step}.txt").write_text("\n".join([head, *table]) + "\n")
    except CurveError as exc:
        print(f"error: {exc}")
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
