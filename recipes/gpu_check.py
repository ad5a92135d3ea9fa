"""The Python steps of ``recipes/gpu-check.sh`` (which see): probe, summary, verify, slim-espeak.

    python recipes/gpu_check.py probe --out DIR/cuda-probe.json --attempt preload_dlls [--want-cuda]
    python recipes/gpu_check.py nvidia-lib-dirs          # NVIDIA pip packages' lib folders, ':'-joined
    python recipes/gpu_check.py summary DIR              # DIR/summary.json + summary.md from the reports
    python recipes/gpu_check.py verify DIR [--dry-run]   # every report there, with sane content
    python recipes/gpu_check.py slim-espeak WHEEL OUT    # espeakng-loader wheel with the English data only

Only the standard library, numpy and (for ``probe``) onnx and onnxruntime: it runs on the GPU host
before anything is installed there.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import sys
import time
import zipfile
from pathlib import Path

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
TTFA_BOUND_MS = 250.0
# what the reports folder must hold after a run (the sweep's own files are under sweep/)
REPORTS = (
    "env.json",
    "cuda-probe.json",
    "export.log",
    "bench.json",
    "serve.log",
    "sweep/report.json",
    "sweep/report.md",
    "summary.json",
    "summary.md",
)
CUDA_LIB = re.compile(r"/(lib(?:cudart|cublas|cublasLt|cudnn[a-z_]*|cufft|curand|nvrtc)\.so[.0-9]*)$")


class CheckError(Exception):
    """A report is missing or does not say what it should (one line)."""


# ------------------------------------------------------------------------------------- probe


def nvidia_lib_dirs() -> list[str]:
    """Folders of shared libraries from NVIDIA's pip packages (torch's CUDA, cuDNN, cuBLAS, ...)."""
    dirs: list[str] = []
    for base in sys.path:
        for pattern in ("nvidia/*/lib", "nvidia/*/lib64", "nvidia/cu*/lib"):
            for d in sorted(glob.glob(os.path.join(base or ".", pattern))):
                if d not in dirs and glob.glob(os.path.join(d, "*.so*")):
                    dirs.append(d)
    return dirs


def _tiny_model():
    """Conv1d -> Tanh -> MatMul: cuDNN and cuBLAS both, a few hundred bytes."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((16, 8, 3)).astype(np.float32), "w")
    m = numpy_helper.from_array(rng.standard_normal((64, 32)).astype(np.float32), "m")
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1]),
            helper.make_node("Tanh", ["c"], ["t"]),
            helper.make_node("MatMul", ["t", "m"], ["y"]),
        ],
        "probe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 16, 32])],
        [w, m],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString(), rng.standard_normal((2, 8, 64)).astype(np.float32)


def _loaded_cuda_libs() -> list[str]:
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return []
    found = {line.split()[-1] for line in maps.splitlines() if CUDA_LIB.search(line)}
    return sorted(found)


def probe(attempt: str, want_cuda: bool) -> dict:
    """Can onnxruntime run a session on CUDA here, with the libraries as they are? ``attempt`` says
    how they were offered: ``preload_dlls`` (what the engine does), ``ld_library_path`` (the caller
    put the NVIDIA package folders on LD_LIBRARY_PATH), ``import_torch`` (torch loads its own)."""
    rec: dict = {"attempt": attempt, "ld_library_path": os.environ.get("LD_LIBRARY_PATH", "")}
    if attempt == "import_torch":
        try:
            import torch

            rec["torch"] = (
                f"{torch.__version__} (cuda {torch.version.cuda}, available {torch.cuda.is_available()})"
            )
        except Exception as exc:
            rec["torch"] = f"import failed: {exc}"
    import numpy as np
    import onnxruntime as ort

    rec.update(
        onnxruntime=ort.__version__,
        onnxruntime_path=str(Path(ort.__file__).parent),
        available=ort.get_available_providers(),
        nvidia_lib_dirs=nvidia_lib_dirs(),
    )
    providers = [CPU]
    if CUDA in rec["available"]:
        providers = [CUDA, CPU]
        if attempt == "preload_dlls":
            try:
                ort.preload_dlls()
                rec["preload_dlls"] = "ok"
            except Exception as exc:
                rec["preload_dlls"] = (
                    f"failed: {str(exc).strip().splitlines()[0] if str(exc).strip() else exc!r}"
                )
    model, x = _tiny_model()
    so = ort.SessionOptions()
    so.log_severity_level = 3
    t0 = time.perf_counter()
    try:
        sess = ort.InferenceSession(model, so, providers=providers)
        rec["session_provider"] = sess.get_providers()[0]
        y = sess.run(None, {"x": x})[0]
        ref = ort.InferenceSession(model, so, providers=[CPU]).run(None, {"x": x})[0]
        rec["max_abs_diff_vs_cpu"] = float(np.max(np.abs(y - ref)))
        rec["error"] = None
    except Exception as exc:
        rec["session_provider"] = None
        rec["error"] = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
    rec["seconds"] = round(time.perf_counter() - t0, 3)
    rec["loaded_cuda_libs"] = _loaded_cuda_libs()
    rec["cuda_ok"] = (
        rec["session_provider"] == CUDA and rec["error"] is None and rec["max_abs_diff_vs_cpu"] < 1e-3
    )
    rec["wanted_cuda"] = want_cuda
    return rec


def run_probe(args: argparse.Namespace) -> int:
    out = Path(args.out)
    attempts = json.loads(out.read_text())["attempts"] if out.exists() else []
    rec = probe(args.attempt, args.want_cuda)
    attempts.append(rec)
    worked = next((a["attempt"] for a in attempts if a["cuda_ok"]), None)
    doc = {
        "attempts": attempts,
        "cuda_ok": worked is not None,
        "method": worked,
        "torch_nvidia_libs_used": bool(worked) and any("/nvidia/" in p for p in rec["loaded_cuda_libs"]),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    libs = ", ".join(Path(p).name for p in rec["loaded_cuda_libs"]) or "none"
    print(
        f"probe ({args.attempt}): onnxruntime {rec['onnxruntime']}, session on {rec['session_provider']}"
        f"{', error: ' + rec['error'] if rec['error'] else ''}; CUDA libraries loaded: {libs}"
    )
    return 0 if rec["cuda_ok"] or not args.want_cuda else 1


# ------------------------------------------------------------------------------------- summary


def bench_numbers(doc: dict) -> dict:
    """``parawave bench --json``'s object (service/bench_report.py) -> the summary's bench part:
    student samples/s by precision and batch, the best batch of each, the utterance, RTF and TTFA,
    the providers. A document without the fields the summary needs is a CheckError."""
    try:
        student: dict[str, dict[str, float]] = {}
        for row in doc["student"]:
            student.setdefault(row["precision"], {})[str(row["batch"])] = float(row["samples_per_s"])
        out: dict = {"student_samples_per_s": student, "providers": doc["providers"]}
        if doc["student"]:
            out["utterance_s"] = doc["student"][0]["utterance_s"]
        if doc["rtf"] is not None:
            out["rtf_best"], out["rtf_median"] = doc["rtf"]["best"], doc["rtf"]["median"]
            out["ttfa_best_s"] = doc["rtf"]["ttfa_s"]["best"]
    except (KeyError, TypeError) as exc:
        raise CheckError(f"bench.json: not parawave bench --json output ({exc!r} missing or wrong)") from None
    out["best_batch"] = {
        prec: {"batch": int(b), "samples_per_s": r}
        for prec, rates in student.items()
        for b, r in [max(rates.items(), key=lambda kv: kv[1])]
    }
    return out


def streams_in_real_time(levels: list[dict]) -> int:
    """The most concurrent streams served with no errors, TTFA p95 within the bound, and every stream
    getting audio at least as fast as it plays (real-time multiple >= concurrency)."""
    best = 0
    for lv in levels:
        p95 = (lv.get("ttfa_ms") or {}).get("p95")
        if (
            lv.get("ok")
            and not lv.get("errors")
            and p95 is not None
            and p95 <= TTFA_BOUND_MS
            and lv.get("rt_multiple", 0) >= lv["concurrency"]
        ):
            best = max(best, lv["concurrency"])
    return best


def summarize(folder: Path) -> dict:
    env = json.loads((folder / "env.json").read_text())
    probe_doc = json.loads((folder / "cuda-probe.json").read_text())
    bench = bench_numbers(json.loads((folder / "bench.json").read_text()))
    sweep = json.loads((folder / "sweep" / "report.json").read_text())
    levels = [
        {
            "concurrency": lv["concurrency"],
            "requests": lv["requests"],
            "ok": lv["ok"],
            "errors": lv["errors"],
            "ttfa_p50_ms": (lv.get("ttfa_ms") or {}).get("p50"),
            "ttfa_p95_ms": (lv.get("ttfa_ms") or {}).get("p95"),
            "rt_multiple": lv.get("rt_multiple"),
        }
        for lv in sweep["levels"]
    ]
    doc = {
        "mode": env.get("mode"),
        "device": env.get("device"),
        "gpu": env.get("gpu"),
        "onnxruntime": env.get("onnxruntime"),
        "cuda_libraries": {
            "ok": probe_doc["cuda_ok"],
            "method": probe_doc["method"],
            "torch_nvidia_libs_used": probe_doc["torch_nvidia_libs_used"],
        },
        "bench": bench,
        "sweep": {
            "provider": sweep.get("server", {}).get("provider"),
            "levels": levels,
            "stopped": sweep.get("stopped"),
            "streams_in_real_time": streams_in_real_time(sweep["levels"]),
        },
        "steps": env.get("steps", {}),
    }
    (folder / "summary.json").write_text(json.dumps(doc, indent=2) + "\n")
    (folder / "summary.md").write_text(summary_md(doc))
    return doc


def summary_md(doc: dict) -> str:
    b, s = doc["bench"], doc["sweep"]
    lines = [
        f"# GPU check ({doc['mode']}): {doc.get('gpu') or 'no GPU'}, onnxruntime {doc.get('onnxruntime')}",
        "",
        f"CUDA libraries: {'loaded' if doc['cuda_libraries']['ok'] else 'not loaded'}"
        f" (method {doc['cuda_libraries']['method']}; torch's NVIDIA packages used: "
        f"{doc['cuda_libraries']['torch_nvidia_libs_used']})",
        "",
        f"Student samples/s, {b.get('utterance_s', '?')} s utterance (bench providers {b.get('providers')}):",
        "",
        "| precision | batch 1 | best batch | samples/s at best |",
        "|---|---:|---:|---:|",
    ]
    for prec, rates in sorted(b["student_samples_per_s"].items()):
        best = b["best_batch"][prec]
        lines.append(
            f"| {prec} | {rates.get('1', 0):,.0f} | {best['batch']} | {best['samples_per_s']:,.0f} |"
        )
    if "rtf_best" in b:
        lines += [
            "",
            f"text->audio RTF best {b['rtf_best']:.4f}, median {b['rtf_median']:.4f}; "
            f"time to first audio best {b['ttfa_best_s'] * 1000:.1f} ms",
        ]
    lines += [
        "",
        f"Sweep on {s['provider']}: {s['streams_in_real_time']} streams served in real time "
        f"(TTFA p95 <= {TTFA_BOUND_MS:.0f} ms, no errors, RT multiple >= streams)"
        + (
            f"; stopped at concurrency {s['stopped']['at_concurrency']}: {s['stopped']['reason']}"
            if s["stopped"]
            else ""
        ),
        "",
        "| concurrency | ok | errors | TTFA p50 ms | TTFA p95 ms | RT multiple |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for lv in s["levels"]:
        lines.append(
            f"| {lv['concurrency']} | {lv['ok']} | {sum(lv['errors'].values())} | {lv['ttfa_p50_ms']} | "
            f"{lv['ttfa_p95_ms']} | {lv['rt_multiple']} |"
        )
    steps = doc.get("steps") or {}
    if steps:
        lines += ["", "Steps (s): " + ", ".join(f"{k} {v}" for k, v in steps.items())]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------- verify


def verify(folder: Path, dry_run: bool) -> list[str]:
    """What is wrong with a finished run's reports (empty: nothing)."""
    problems = [f"{name} is missing or empty" for name in REPORTS if not _nonempty(folder / name)]
    if problems:
        return problems
    env = json.loads((folder / "env.json").read_text())
    for step in ("install", "probe", "export", "bench", "serve", "sweep"):
        if step not in env.get("steps", {}):
            problems.append(f"env.json: step {step} did not run")
    doc = json.loads((folder / "summary.json").read_text())
    want = CPU if dry_run else CUDA
    rates = doc["bench"]["student_samples_per_s"]
    if not rates.get("fp32", {}).get("1"):
        problems.append("bench.json: no student samples/s at batch 1")
    if not dry_run and not rates.get("fp16", {}).get("1"):
        problems.append("bench.json: no fp16 student samples/s at batch 1")
    if (doc["bench"].get("providers") or {}).get("student") != want:
        problems.append(f"bench.json: the student did not run on {want}")
    if doc["sweep"]["provider"] != want:
        problems.append(f"sweep: the server ran on {doc['sweep']['provider']}, not {want}")
    levels = doc["sweep"]["levels"]
    if not levels or not any(lv["ok"] for lv in levels):
        problems.append("sweep: no level served a request")
    elif any(lv["ttfa_p95_ms"] is None for lv in levels if lv["ok"]):
        problems.append("sweep: a level with answers has no TTFA")
    if not dry_run and not doc["cuda_libraries"]["ok"]:
        problems.append("cuda-probe.json: onnxruntime could not run a session on CUDA")
    voices = folder / "voice.json"
    if voices.exists():
        manifest = json.loads(voices.read_text())
        if "student_fp16" not in manifest.get("files", {}):
            problems.append("voice.json: the bundle has no fp16 student")
    else:
        problems.append("voice.json (the bundle's manifest) is missing")
    return problems


def _nonempty(p: Path) -> bool:
    return p.is_file() and p.stat().st_size > 0


# ------------------------------------------------------------------------------------- espeak


def slim_espeak(wheel: Path, out_dir: Path, keep: tuple[str, ...] = ("en_dict",)) -> Path:
    """A copy of the espeakng-loader wheel without the other languages' dictionaries (8 MB of its
    10 are ru_dict alone); the G2P uses en-us only. RECORD loses their lines."""
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / wheel.name

    def dropped(name: str) -> bool:
        base = name.rsplit("/", 1)[-1]
        return "/espeak-ng-data/" in name and base.endswith("_dict") and base not in keep

    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            if dropped(info.filename):
                continue
            data = src.read(info)
            if info.filename.endswith(".dist-info/RECORD"):
                lines = data.decode().splitlines(keepends=True)
                data = "".join(line for line in lines if not dropped(line.split(",")[0])).encode()
            dst.writestr(info, data)
    if not any(n.endswith("/en_dict") for n in zipfile.ZipFile(target).namelist()):
        raise CheckError(f"{wheel.name}: no en_dict in it")
    return target


# ------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="gpu_check.py", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("probe")
    p.add_argument("--out", required=True)
    p.add_argument(
        "--attempt", choices=("preload_dlls", "ld_library_path", "import_torch"), default="preload_dlls"
    )
    p.add_argument("--want-cuda", action="store_true")
    sub.add_parser("nvidia-lib-dirs")
    p = sub.add_parser("summary")
    p.add_argument("folder", type=Path)
    p = sub.add_parser("verify")
    p.add_argument("folder", type=Path)
    p.add_argument("--dry-run", action="store_true")
    p = sub.add_parser("slim-espeak")
    p.add_argument("wheel", type=Path)
    p.add_argument("out", type=Path)
    args = ap.parse_args(argv)
    try:
        if args.cmd == "probe":
            return run_probe(args)
        if args.cmd == "nvidia-lib-dirs":
            print(":".join(nvidia_lib_dirs()))
            return 0
        if args.cmd == "summary":
            doc = summarize(args.folder)
            print((args.folder / "summary.md").read_text(), end="")
            return 0 if doc["bench"]["student_samples_per_s"] else 1
        if args.cmd == "verify":
            problems = verify(args.folder, args.dry_run)
            for problem in problems:
                print(f"gpu-check: {args.folder}: {problem}", file=sys.stderr)
            if not problems:
                print(f"gpu-check: {args.folder}: every report is there")
            return 1 if problems else 0
        if args.cmd == "slim-espeak":
            print(slim_espeak(args.wheel, args.out))
            return 0
    except (CheckError, OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        print(f"gpu_check.py {args.cmd}: error: {exc}", file=sys.stderr)
        return 2
    return 2


if __name__ == "__main__":
    sys.exit(main())
