"""A/B of the student graph in static int8 (QDQ) against fp32 on this CPU: speed and copy synthesis.

    python -m bench.quant --voice voices/flite --data data/flite [--calib 12] [--limit 4]
                                 [--threads 1] [--repeats 5] [--seconds 3] [--keep DIR]

- int8: ``onnxruntime.quantization.quantize_static`` of the bundle's ``student.onnx``, QDQ format,
  per-channel int8 weights, uint8 activations (the u8s8 layout ONNX Runtime's VNNI / AMX-INT8
  kernels take), calibrated (MinMax) on ``--calib`` training clips' real inputs: the recording's
  log-mel, its excitation from the Praat F0, standard normal noise and the speaker -- what the served
  path feeds it.
- speed: ``InferenceSession.run`` of each graph on the same ``--seconds`` of input, ``--threads``
  intra-op threads, best and median of ``--repeats`` (wall and process CPU time), samples/s.
- quality: the first ``--limit`` test clips per speaker vocoded by each graph through the engine's
  own ``Voice.vocode`` (a copy of the bundle with the int8 student swapped in), same noise; PESQ-WB
  and STOI against the recording, and their change. The issue's rule: adopt int8 only if faster and
  PESQ-WB drops by at most 0.05.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

PESQ_TOLERANCE = 0.05


def clip_inputs(corpus_dir: Path, clip_id: str, seed: int, cfg):
    """(recording (F*hop,), mel (n_mels, F), F0 (F,) Hz, noise (F*hop,)) of one clip: the
    copy-synthesis inputs (``evaluation.copy_synthesis.copy_inputs``) and standard normal noise from ``seed``."""
    from evaluation.copy_synthesis import copy_inputs
    from model.data.features import load_clip_audio

    ref, mel, f0 = copy_inputs(load_clip_audio(corpus_dir, clip_id, cfg), cfg)
    z = np.random.default_rng(seed).standard_normal(mel.shape[1] * cfg.hop_length, dtype=np.float32)
    return ref, mel, f0, z


def student_feeds(
    voice, mel: np.ndarray, f0: np.ndarray, z: np.ndarray, speaker: int
) -> dict[str, np.ndarray]:
    """One utterance as the student graph's feeds (batch 1), built like ``Voice.vocode`` builds them."""
    exc = voice.excitation(f0, mel.shape[1])  # (3, F*hop)
    spk = voice.student.spec.inputs[2].name  # speaker_weights (format 3) or speaker (format 2)
    return {
        "z": z[None],
        "mel": mel[None].astype(np.float32),
        spk: voice.speaker_feed(voice.student, [speaker]),
        "excitation": exc[None].astype(np.float32),
    }


def quantize(fp32: Path, int8: Path, feeds: list[dict[str, np.ndarray]]) -> None:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(feeds)

        def get_next(self):
            return next(self._it, None)

    pre = int8.with_suffix(".pre.onnx")
    quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)  # dynamic T: ONNX shape inference only
    quantize_static(
        str(pre), str(int8), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
        weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8,
    )  # fmt: skip
    pre.unlink()


def time_graph(path: Path, feeds: dict[str, np.ndarray], threads: int, repeats: int) -> dict[str, float]:
    import onnxruntime as ort

    from service.sessions import session_options

    so = session_options(threads)
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    sess.run(None, feeds)  # warm-up
    wall, cpu = [], []
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        sess.run(None, feeds)
        wall.append(time.perf_counter() - w)
        cpu.append(time.process_time() - c)
    n = feeds["z"].shape[1]
    return {
        "wall_best_ms": 1e3 * min(wall), "wall_median_ms": 1e3 * statistics.median(wall),
        "cpu_median_ms": 1e3 * statistics.median(cpu), "samples_per_s": n / statistics.median(wall),
    }  # fmt: skip


def swapped_bundle(bundle: Path, int8: Path, dest: Path) -> Path:
    """A copy of the bundle whose student is ``int8`` (manifest hash and size updated)."""
    from service.bundle import sha256_file

    shutil.copytree(bundle, dest)
    shutil.copy(int8, dest / "student.onnx")
    manifest = json.loads((dest / "voice.json").read_text())
    manifest["name"] = dest.name
    manifest["files"]["student"].update(sha256=sha256_file(dest / "student.onnx"), bytes=int8.stat().st_size)
    (dest / "voice.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return dest


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--voice", type=Path, required=True, help="Voice bundle folder (its student.onnx).")
    p.add_argument(
        "--data", type=Path, required=True, help="Corpus (train clips calibrate, test clips score)."
    )
    p.add_argument("--calib", type=int, default=12, help="Calibration clips (training split, all speakers).")
    p.add_argument("--limit", type=int, default=4, help="Test clips per speaker for PESQ-WB / STOI.")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--seconds", type=float, default=3.0, help="Input length of the speed rows.")
    p.add_argument("--keep", type=Path, default=None, help="Also keep the int8 graph here.")
    p.add_argument("--out", type=Path, default=None, help="Also write the table here.")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    import dataclasses

    from evaluation.clips import clip_seed, select_clips
    from evaluation.errors import EvalError
    from evaluation.metrics import pesq_wb, stoi_of
    from evaluation.voices import load_voice
    from model.data.config import AudioConfig
    from model.data.corpus import Corpus, CorpusError

    if not (args.voice / "student.onnx").is_file():
        print(f"error: {args.voice}: no student.onnx")
        return 2
    try:
        corpus = Corpus(args.data)
        _, voice = load_voice(args.voice, "cpu")
        train = select_clips(corpus, "train", voice.speakers, 0, 0)
        test = select_clips(corpus, "test", voice.speakers, args.limit, 0)
    except (CorpusError, EvalError) as exc:
        print(f"error: {exc}")
        return 2
    cfg = AudioConfig.from_dict(dataclasses.asdict(voice.manifest.audio))
    calib = []
    for i, c in enumerate(train[:: max(1, len(train) // args.calib)][: args.calib]):
        sid = voice.speaker_id(c.voice_speaker)
        _, mel, f0, z = clip_inputs(args.data, c.id, i, cfg)
        calib.append(student_feeds(voice, mel, f0, z, sid))

    lines = [
        f"bench_quant: onnxruntime {__import__('onnxruntime').__version__}, {platform.processor() or platform.machine()}, "
        f"{args.threads} thread(s); student {args.voice / 'student.onnx'}; calibration {len(calib)} train clips",
    ]
    with tempfile.TemporaryDirectory(prefix="quant-") as tmp:
        tmp = Path(tmp)
        int8 = tmp / "student.int8.onnx"
        t0 = time.perf_counter()
        quantize(args.voice / "student.onnx", int8, calib)
        lines.append(
            f"quantize_static (QDQ, per-channel s8 weights, u8 activations): {time.perf_counter() - t0:.1f} s"
        )
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            shutil.copy(int8, args.keep / int8.name)

        # speed: the same input (first test clip, cut or tiled to --seconds)
        c0 = test[0]
        _, mel, f0, z = clip_inputs(args.data, c0.id, 0, cfg)
        frames = int(args.seconds * cfg.sample_rate / cfg.hop_length)
        reps = -(-frames // mel.shape[1])
        mel, f0 = np.tile(mel, (1, reps))[:, :frames], np.tile(f0, reps)[:frames]
        z = np.resize(z, frames * cfg.hop_length).astype(np.float32)
        feeds = student_feeds(voice, mel, f0, z, voice.speaker_id(c0.voice_speaker))
        speed = {
            "fp32": time_graph(args.voice / "student.onnx", feeds, args.threads, args.repeats),
            "int8": time_graph(int8, feeds, args.threads, args.repeats),
        }
        lines.append("")
        lines.append(f"speed ({args.seconds:g} s of audio, batch 1, median of {args.repeats})")
        lines.append(
            f"{'graph':<6} {'kB':>8} {'wall best ms':>13} {'wall med ms':>12} {'cpu med ms':>11} {'samples/s':>12}"
        )
        for name, path in (("fp32", args.voice / "student.onnx"), ("int8", int8)):
            s = speed[name]
            lines.append(
                f"{name:<6} {path.stat().st_size / 1e3:>8.1f} {s['wall_best_ms']:>13.1f} {s['wall_median_ms']:>12.1f} "
                f"{s['cpu_median_ms']:>11.1f} {s['samples_per_s']:>12,.0f}"
            )
        ratio = speed["fp32"]["wall_median_ms"] / speed["int8"]["wall_median_ms"]
        lines.append(f"int8 / fp32 speed: {ratio:.2f}x")

        # quality: copy synthesis through the engine's own vocode path
        _, voice8 = load_voice(swapped_bundle(args.voice, int8, tmp / "int8-voice"), "cpu")
        scores: dict[str, dict[str, list[float]]] = {
            "fp32": {"pesq": [], "stoi": []},
            "int8": {"pesq": [], "stoi": []},
        }
        for c in test:
            sid = voice.speaker_id(c.voice_speaker)
            ref, mel, f0, z = clip_inputs(args.data, c.id, clip_seed(0, c.id), cfg)
            for name, v in (("fp32", voice), ("int8", voice8)):
                out = v.vocode([mel], [sid], [z], [f0])[0]
                scores[name]["pesq"].append(pesq_wb(ref, out, cfg.sample_rate))
                scores[name]["stoi"].append(stoi_of(ref, out, cfg.sample_rate))
        n = len(scores["fp32"]["pesq"])
        mean = {k: {m: float(np.nanmean(v)) for m, v in d.items()} for k, d in scores.items()}
        dp = mean["int8"]["pesq"] - mean["fp32"]["pesq"]
        lines.append("")
        lines.append(f"copy synthesis ({n} test clips, {args.limit} per speaker, same noise)")
        lines.append(f"{'graph':<6} {'PESQ-WB':>8} {'STOI':>7}")
        for name in ("fp32", "int8"):
            lines.append(f"{name:<6} {mean[name]['pesq']:>8.3f} {mean[name]['stoi']:>7.3f}")
        lines.append(f"PESQ-WB change {dp:+.3f} (tolerance -{PESQ_TOLERANCE}); speed {ratio:.2f}x")
        adopt = ratio > 1.0 and dp >= -PESQ_TOLERANCE
        lines.append("verdict: " + ("adopt int8 (faster at equal quality)" if adopt else "keep fp32"))
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
