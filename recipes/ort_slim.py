"""onnxruntime-gpu, slimmed for one GPU architecture, so that it fits the GPU host's small transfers.

The onnxruntime-gpu 1.31.1 wheel for cp312 is 255 MB; the host takes 64 MiB per call, the working
tree included. Most of the wheel is the CUDA provider's device code: ``.nv_fatbin`` in
``libonnxruntime_providers_cuda.so`` holds each kernel module compiled for sm_75, 80, 86, 89, 90
and 120 (218 MB of 284 MB). This tool writes the ``onnxruntime`` package of the wheel with

* the CUDA provider's fat binaries reduced to the architectures asked for (``--arch 90`` for the
  H100/H200): in every fat binary that holds an image for one of them, the other images are dropped,
  the kept ones moved to its front, its size field shrunk and the freed bytes zeroed (so they cost
  nothing once compressed). A fat binary with no image for them is left as it is. The ELF layout
  (section sizes, offsets, symbols) does not change: the CUDA runtime reads a fat binary through its
  own header and picks the image for the device, which is now the only one there;
* the libraries the Python package does not load left out: ``libonnxruntime.so*`` (the C API; the
  Python binding links the runtime in itself) and the TensorRT provider;

as one ``.tar.xz`` (cut into parts of ``--part-mb`` when asked) plus ``ort-slim.json``: the wheel's
name and sha256, the archive's sha256, the architectures kept and the sizes before and after.

    python recipes/ort_slim.py WHEEL --arch 90 --out DIR [--part-mb 30]
    python recipes/ort_slim.py --inspect libonnxruntime_providers_cuda.so   # images per architecture

Unpacked on the host (``tar -xJf``) it is an importable ``onnxruntime`` folder: put its parent first
on PYTHONPATH.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import struct
import subprocess
import sys
import tarfile
import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

FATBIN_MAGIC = 0xBA55ED50  # a fat binary's header: magic u32, version u16, header size u16, size u64
CUDA_PROVIDER = "onnxruntime/capi/libonnxruntime_providers_cuda.so"
LEFT_OUT = ("onnxruntime/capi/libonnxruntime.so", "onnxruntime/capi/libonnxruntime_providers_tensorrt.so")
KIND = {1: "ptx", 2: "elf"}


class SlimError(Exception):
    """Something in the wheel is not as this tool expects (one line)."""


@dataclass(frozen=True)
class Image:
    kind: str  # "elf" (a cubin) or "ptx"
    arch: int  # e.g. 90 for sm_90
    start: int  # offset of the image's header in the section
    length: int  # header + payload bytes


def section(elf: bytes, name: str) -> tuple[int, int]:
    """(file offset, size) of the ELF64 little-endian section ``name``."""
    if elf[:4] != b"\x7fELF" or elf[4] != 2 or elf[5] != 1:
        raise SlimError("not a 64-bit little-endian ELF file")
    shoff = struct.unpack_from("<Q", elf, 0x28)[0]
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", elf, 0x3A)
    headers = [struct.unpack_from("<IIQQQQ", elf, shoff + i * shentsize) for i in range(shnum)]
    str_off = headers[shstrndx][4]
    for sh_name, _type, _flags, _addr, offset, size in headers:
        end = elf.index(b"\0", str_off + sh_name)
        if elf[str_off + sh_name : end].decode() == name:
            return offset, size
    raise SlimError(f"no {name} section")


def fatbins(sec: bytes | bytearray) -> list[tuple[int, int, int, list[Image]]]:
    """Every fat binary in a ``.nv_fatbin`` section: (start, header size, size, images)."""
    out = []
    pos = 0
    while pos + 16 <= len(sec):
        magic, _version, hsize, size = struct.unpack_from("<IHHQ", sec, pos)
        if magic != FATBIN_MAGIC:  # padding between fat binaries (8-byte aligned)
            pos += 8
            continue
        images, e, end = [], pos + hsize, pos + hsize + size
        while e < end:
            kind, _v, ehsize, payload = struct.unpack_from("<HHIQ", sec, e)
            arch = struct.unpack_from("<I", sec, e + 28)[0]
            images.append(Image(KIND.get(kind, str(kind)), arch, e, ehsize + payload))
            e += ehsize + payload
        if e != end:
            raise SlimError(f"fat binary at {pos:#x}: its images overrun its size")
        out.append((pos, hsize, size, images))
        pos = end
    return out


def prune(elf: bytes, keep: set[int]) -> tuple[bytes, dict]:
    """``elf`` with its fat binaries reduced to the images for ``keep`` (see the module doc)."""
    offset, size = section(elf, ".nv_fatbin")
    sec = bytearray(elf[offset : offset + size])
    bins = fatbins(sec)
    if not bins:
        raise SlimError("no fat binary in .nv_fatbin")
    before, after, untouched = Counter(), Counter(), 0
    for start, hsize, fsize, images in bins:
        for im in images:
            before[f"{im.kind}_sm{im.arch}"] += im.length
        kept = [im for im in images if im.arch in keep]
        if not kept:
            untouched += 1
            for im in images:
                after[f"{im.kind}_sm{im.arch}"] += im.length
            continue
        body = b"".join(bytes(sec[im.start : im.start + im.length]) for im in kept)
        first = start + hsize
        sec[first : first + fsize] = body + bytes(fsize - len(body))
        struct.pack_into("<Q", sec, start + 8, len(body))
        for im in kept:
            after[f"{im.kind}_sm{im.arch}"] += im.length
    if not any(after[k] for k in after if int(k.rsplit("sm", 1)[1]) in keep):
        raise SlimError(f"no image for sm_{'/'.join(map(str, sorted(keep)))} in the CUDA provider")
    report = {
        "fatbins": len(bins),
        "fatbins_without_kept_arch": untouched,
        "image_bytes_before": dict(sorted(before.items())),
        "image_bytes_after": dict(sorted(after.items())),
    }
    return elf[:offset] + bytes(sec) + elf[offset + size :], report


def inspect(path: Path) -> None:
    elf = path.read_bytes()
    offset, size = section(elf, ".nv_fatbin")
    per = Counter()
    count = Counter()
    bins = fatbins(elf[offset : offset + size])
    for *_, images in bins:
        for im in images:
            per[(im.kind, im.arch)] += im.length
            count[(im.kind, im.arch)] += 1
    print(f"{path.name}: .nv_fatbin {size / 1e6:.1f} MB, {len(bins)} fat binaries")
    for (kind, arch), n in sorted(per.items()):
        print(f"  {kind} sm_{arch}: {count[(kind, arch)]} images, {n / 1e6:.1f} MB")


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def slim(wheel: Path, keep: set[int], out: Path, part_mb: int, xz_level: int) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    archive = out / "ort-slim.tar.xz"
    raw = Counter()
    tar_bytes = io.BytesIO()
    report: dict = {}
    with (
        zipfile.ZipFile(wheel) as z,
        tarfile.open(fileobj=tar_bytes, mode="w", format=tarfile.PAX_FORMAT) as t,
    ):
        names = z.namelist()
        if CUDA_PROVIDER not in names:
            raise SlimError(f"{wheel.name}: no {CUDA_PROVIDER} (not an onnxruntime-gpu wheel?)")
        for name in names:
            if name.endswith("/") or name.startswith(LEFT_OUT):
                continue
            data = z.read(name)
            raw["wheel"] += len(data)
            if name == CUDA_PROVIDER:
                data, report = prune(data, keep)
            raw["kept"] += len(data)
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o755 if name.endswith(".so") or ".so." in name else 0o644
            info.mtime = 0  # the same wheel gives the same archive
            t.addfile(info, io.BytesIO(data))
    xz = subprocess.run(
        ["xz", f"-{xz_level}", "-T0", "-c"], input=tar_bytes.getvalue(), capture_output=True, check=False
    )
    if xz.returncode:
        raise SlimError(f"xz failed: {xz.stderr.decode().strip()}")
    archive.write_bytes(xz.stdout)
    for old in out.glob("ort-slim.tar.xz.part-*"):
        old.unlink()
    parts = []
    if part_mb:
        step = part_mb * 1024 * 1024
        for i in range(0, len(xz.stdout), step):
            p = out / f"ort-slim.tar.xz.part-{i // step:02d}"
            p.write_bytes(xz.stdout[i : i + step])
            parts.append(p.name)
        archive.unlink()
    manifest = {
        "wheel": wheel.name,
        "wheel_sha256": sha256(wheel),
        "wheel_bytes": wheel.stat().st_size,
        "arch_kept": sorted(keep),
        "left_out": list(LEFT_OUT),
        "unpacked_bytes": raw["kept"],
        "archive": archive.name,
        "archive_sha256": hashlib.sha256(xz.stdout).hexdigest(),
        "archive_bytes": len(xz.stdout),
        "parts": parts,
        "cuda_provider": report,
    }
    (out / "ort-slim.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("wheel", nargs="?", type=Path, help="an onnxruntime-gpu wheel")
    ap.add_argument("--arch", default="90", help="SM architectures to keep, comma-separated (90: H100/H200)")
    ap.add_argument("--out", type=Path, default=Path(".gpucheck/ort"))
    ap.add_argument("--part-mb", type=int, default=0, help="cut the archive into parts of this many MiB")
    ap.add_argument("--xz-level", type=int, default=6, choices=range(10))
    ap.add_argument("--inspect", type=Path, help="print a CUDA library's images per architecture")
    args = ap.parse_args(argv)
    try:
        if args.inspect:
            inspect(args.inspect)
            return 0
        if args.wheel is None:
            ap.error("a wheel is required")
        keep = {int(a) for a in args.arch.split(",") if a.strip()}
        m = slim(args.wheel, keep, args.out, args.part_mb, args.xz_level)
    except (SlimError, OSError, zipfile.BadZipFile, ValueError) as exc:
        print(f"ort_slim: error: {exc}", file=sys.stderr)
        return 2
    mb = 1024 * 1024
    print(
        f"ort_slim: {m['wheel']} ({m['wheel_bytes'] / mb:.1f} MiB) -> {m['archive']} "
        f"{m['archive_bytes'] / mb:.1f} MiB (sm_{'/'.join(map(str, m['arch_kept']))}; "
        f"{m['unpacked_bytes'] / mb:.0f} MiB unpacked){'; parts ' + ' '.join(m['parts']) if m['parts'] else ''}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
