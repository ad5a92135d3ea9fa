"""recipes/gpu-check.sh --dry-run: every step of the GPU check (probe, export, bench, serve, sweep,
summary, verify) on the CPU provider at tiny sizes, and the reports it leaves; plus the pieces the
device run depends on that the dry run cannot reach (the fat-binary pruning of recipes/ort_slim.py,
the bench parser, the real-time rule, the espeak slimming, the checker itself)."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "recipes"))

import gpu_check  # noqa: E402
import ort_slim  # noqa: E402


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("gpu-check") / "reports"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARAWAVE_")}
    env["PYTHON"] = sys.executable
    run = subprocess.run(
        ["bash", str(REPO / "recipes" / "gpu-check.sh"), "--dry-run", "--out", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    return out, run


def test_dry_run_runs_every_step_and_writes_every_report(dry_run):
    out, run = dry_run
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "every report is there" in run.stdout
    for name in gpu_check.REPORTS:
        assert (out / name).stat().st_size > 0, name
    env = json.loads((out / "env.json").read_text())
    assert env["mode"] == "dry-run" and env["device"] == "cpu"
    assert list(env["steps"]) == ["install", "probe", "export", "bench", "serve", "sweep", "total"]

    probe = json.loads((out / "cuda-probe.json").read_text())
    (attempt,) = probe["attempts"]
    assert attempt["session_provider"] == "CPUExecutionProvider" and attempt["error"] is None
    assert attempt["max_abs_diff_vs_cpu"] == 0.0

    manifest = json.loads((out / "voice.json").read_text())
    assert {"acoustic", "student", "student_fp16"} <= set(manifest["files"])

    summary = json.loads((out / "summary.json").read_text())
    rates = summary["bench"]["student_samples_per_s"]["fp32"]
    assert set(rates) == {"1", "2"} and all(r > 0 for r in rates.values())
    assert summary["bench"]["utterance_s"] == pytest.approx(1.0, abs=0.02)
    assert summary["bench"]["best_batch"]["fp32"]["batch"] in (1, 2)
    sweep = summary["sweep"]
    assert sweep["provider"] == "CPUExecutionProvider"
    assert [lv["concurrency"] for lv in sweep["levels"]][:1] == [1]
    assert sweep["levels"][0]["ok"] > 0 and sweep["levels"][0]["ttfa_p95_ms"] > 0
    assert 0 <= sweep["streams_in_real_time"] <= 2
    md = (out / "summary.md").read_text()
    assert "| fp32 |" in md and "streams served in real time" in md
    assert not (out / "sweep" / "requests.jsonl").exists()


def test_verify_catches_a_missing_or_wrong_report(dry_run, tmp_path):
    out, run = dry_run
    assert run.returncode == 0
    assert gpu_check.verify(out, dry_run=True) == []
    # the same reports read as a GPU run: nothing ran on CUDA, no fp16
    problems = " | ".join(gpu_check.verify(out, dry_run=False))
    assert "not CUDAExecutionProvider" in problems and "fp16" in problems and "CUDA" in problems
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in gpu_check.REPORTS:
        if name != "bench.json":
            (broken / name).parent.mkdir(parents=True, exist_ok=True)
            (broken / name).write_bytes((out / name).read_bytes())
    assert gpu_check.verify(broken, dry_run=True) == ["bench.json is missing or empty"]


def _cuda_bench_doc() -> dict:
    """What ``parawave bench --json`` prints on a GPU host (service/bench_report.py), numbers made up."""
    from service import bench_report

    doc = bench_report.new_record(
        "gpu-check", "speaker0", 16000, "cuda", {"student": "CUDAExecutionProvider"}
    )
    doc["input"] = {"chars": 265, "sentences": 3, "audio_s": 10.0, "text_front_end": False}
    doc["rtf"] = {
        "input": "ids",
        "runs": 5,
        "best": 0.0031,
        "median": 0.0034,
        "cpu_s_per_audio_s": 0.002,
        "ttfa_s": {"best": 0.0042, "median": 0.0050},
    }
    doc["acoustic_s"] = 0.004
    for prec, batch, rate in (
        ("fp16", 1, 51_200_000.0),
        ("fp16", 8, 190_000_000.0),
        ("fp32", 1, 20_000_000.0),
        ("fp32", 8, 18_000_000.0),
    ):
        doc["student"].append(
            {
                "precision": prec,
                "batch": batch,
                "samples_per_s": rate,
                "median_samples_per_s": rate * 0.9,
                "best_ms": batch * 160_000 / rate * 1000,
                "utterance_s": 10.0,
                "served": prec == "fp16",
            }
        )
    doc["peak_rss_mib"] = 900.0
    return json.loads(bench_report.to_json(doc))


def test_bench_numbers_read_a_cuda_bench():
    got = gpu_check.bench_numbers(_cuda_bench_doc())
    assert got["student_samples_per_s"] == {
        "fp16": {"1": 51_200_000.0, "8": 190_000_000.0},
        "fp32": {"1": 20_000_000.0, "8": 18_000_000.0},
    }
    assert got["best_batch"] == {
        "fp16": {"batch": 8, "samples_per_s": 190_000_000.0},
        "fp32": {"batch": 1, "samples_per_s": 20_000_000.0},
    }
    assert got["utterance_s"] == 10.0 and got["rtf_best"] == 0.0031 and got["ttfa_best_s"] == 0.0042
    assert got["providers"]["student"] == "CUDAExecutionProvider"


@pytest.mark.parametrize("field", ["student", "providers", "rtf"])
def test_bench_numbers_refuse_a_document_without_a_field(field):
    doc = _cuda_bench_doc()
    del doc[field]
    with pytest.raises(gpu_check.CheckError, match=r"bench\.json: not parawave bench --json"):
        gpu_check.bench_numbers(doc)


def test_streams_in_real_time_needs_ttfa_errors_and_speed():
    def lv(c, p95, rt, errors=None):
        return {
            "concurrency": c,
            "ok": 10,
            "errors": errors or {},
            "ttfa_ms": {"p95": p95},
            "rt_multiple": rt,
        }

    assert gpu_check.streams_in_real_time([lv(1, 50, 30), lv(8, 120, 90), lv(16, 300, 150)]) == 8
    assert gpu_check.streams_in_real_time([lv(1, 50, 30), lv(8, 120, 7.5)]) == 1  # slower than real time
    assert gpu_check.streams_in_real_time([lv(1, 50, 30), lv(4, 60, 90, {"429": 1})]) == 1
    assert gpu_check.streams_in_real_time([lv(1, 400, 30)]) == 0


# ------------------------------------------------------------------------------------- ort_slim


def fatbin(images: list[tuple[int, bytes]]) -> bytes:
    """A fat binary: 16-byte header, then one 64-byte header + payload per (arch, payload)."""
    body = b""
    for arch, payload in images:
        head = bytearray(64)
        struct.pack_into("<HHIQ", head, 0, 2, 0x101, 64, len(payload))
        struct.pack_into("<I", head, 28, arch)
        body += bytes(head) + payload
    return struct.pack("<IHHQ", ort_slim.FATBIN_MAGIC, 1, 16, len(body)) + body


def elf_with(sections: dict[str, bytes]) -> bytes:
    """A minimal ELF64 little-endian file holding ``sections`` (+ the section-name table)."""
    names = b"\0" + b"".join(n.encode() + b"\0" for n in [*sections, ".shstrtab"])
    data = bytearray(64)
    data[:6] = b"\x7fELF\x02\x01"
    entries = [(0, 0, 0)]  # (name offset, file offset, size); the null section first
    for name, blob in [*sections.items(), (".shstrtab", names)]:
        entries.append((names.index(name.encode() + b"\0"), len(data), len(blob)))
        data += blob + bytes(-len(blob) % 8)
    shoff = len(data)
    for name_off, off, size in entries:
        data += struct.pack("<IIQQQQIIQQ", name_off, 1, 0, 0, off, size, 0, 0, 8, 0)
    struct.pack_into("<Q", data, 0x28, shoff)
    struct.pack_into("<HHH", data, 0x3A, 64, len(entries), len(entries) - 1)
    return bytes(data)


def test_prune_keeps_only_the_asked_architecture_in_place():
    many = fatbin([(80, b"A" * 40), (90, b"B" * 24), (120, b"C" * 56)])
    only120 = fatbin([(120, b"D" * 32)])
    sec = many + only120
    elf = elf_with({".text": b"\x90" * 32, ".nv_fatbin": sec})
    out, report = ort_slim.prune(elf, {90})
    assert len(out) == len(elf)  # same layout
    off, size = ort_slim.section(out, ".nv_fatbin")
    assert size == len(sec) and out[:off] == elf[:off]
    bins = ort_slim.fatbins(out[off : off + size])
    assert [[(im.arch, im.length) for im in b[3]] for b in bins] == [[(90, 88)], [(120, 96)]]
    first = out[off : off + len(many)]
    assert first[16 + 64 : 16 + 88] == b"B" * 24 and first[16 + 88 :] == bytes(len(many) - 16 - 88)
    assert out[off + len(many) : off + size] == only120  # no sm_90 image there: left as it was
    assert report["fatbins"] == 2 and report["fatbins_without_kept_arch"] == 1
    assert report["image_bytes_after"] == {"elf_sm90": 88, "elf_sm120": 96}
    with pytest.raises(ort_slim.SlimError, match="no image for sm_75"):
        ort_slim.prune(elf, {75})


def test_slim_writes_an_archive_and_parts(tmp_path):
    lib = elf_with({".nv_fatbin": fatbin([(86, b"x" * 100), (90, b"y" * 100)])})
    wheel = tmp_path / "onnxruntime_gpu-9.9.9-cp312-cp312-manylinux_2_28_x86_64.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr(ort_slim.CUDA_PROVIDER, lib)
        z.writestr("onnxruntime/__init__.py", "")
        z.writestr("onnxruntime/capi/libonnxruntime.so.9.9.9", b"c api")
        z.writestr("onnxruntime_gpu-9.9.9.dist-info/METADATA", "Name: onnxruntime-gpu\n")
    m = ort_slim.slim(wheel, {90}, tmp_path / "out", part_mb=0, xz_level=0)
    import tarfile

    with tarfile.open(tmp_path / "out" / "ort-slim.tar.xz") as t:
        names = t.getnames()
        pruned = t.extractfile(ort_slim.CUDA_PROVIDER).read()
    assert "onnxruntime/capi/libonnxruntime.so.9.9.9" not in names
    assert "onnxruntime_gpu-9.9.9.dist-info/METADATA" in names
    assert b"y" * 100 in pruned and b"x" * 100 not in pruned
    assert (
        json.loads((tmp_path / "out" / "ort-slim.json").read_text())["archive_sha256"] == m["archive_sha256"]
    )


def test_slim_espeak_keeps_english_only(tmp_path):
    wheel = tmp_path / "espeakng_loader-0.2.4-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        for name in ("en_dict", "ru_dict", "phondata"):
            z.writestr(f"espeakng_loader/espeak-ng-data/{name}", name)
        record = "".join(f"espeakng_loader/espeak-ng-data/{n},sha256=x,1\n" for n in ("en_dict", "ru_dict"))
        z.writestr("espeakng_loader-0.2.4.dist-info/RECORD", record)
    out = gpu_check.slim_espeak(wheel, tmp_path / "slim")
    with zipfile.ZipFile(out) as z:
        names = set(z.namelist())
        record = z.read("espeakng_loader-0.2.4.dist-info/RECORD").decode()
    assert (
        "espeakng_loader/espeak-ng-data/en_dict" in names
        and "espeakng_loader/espeak-ng-data/phondata" in names
    )
    assert "espeakng_loader/espeak-ng-data/ru_dict" not in names and "ru_dict" not in record
