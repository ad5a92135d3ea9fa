"""The C heap settings (service/allocator.py): the malloc arena limit takes effect, ``serve`` and the app
apply the setting, and /metrics shows the heap (in use vs free) where glibc is the allocator."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from fake_engine import FakeEngine
from typer.testing import CliRunner

from service import allocator, state
from service.cli import app as cli_app
from service.settings import Settings, get_settings

REPO = Path(__file__).resolve().parents[2]
glibc = pytest.mark.skipif(allocator.heap_stats() is None, reason="glibc malloc only")

# Eight threads alive at once, each allocating: glibc gives each its own arena (up to 8 per core)
# unless the limit says otherwise. The arenas are counted in malloc_info's XML.
COUNT_ARENAS = r"""
import ctypes, sys, tempfile, threading
from service.allocator import limit_arenas
limit = int(sys.argv[1])
print("set", limit_arenas(limit))
barrier = threading.Barrier(9)
def work():
    blocks = [bytearray(4096) for _ in range(64)]
    barrier.wait()
    barrier.wait()
threads = [threading.Thread(target=work) for _ in range(8)]
for t in threads:
    t.start()
barrier.wait()
libc = ctypes.CDLL("libc.so.6")
libc.fopen.restype = ctypes.c_void_p
libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
libc.fclose.argtypes = [ctypes.c_void_p]
with tempfile.NamedTemporaryFile(suffix=".xml") as f:
    fp = libc.fopen(f.name.encode(), b"w")
    libc.malloc_info(0, fp)
    libc.fclose(fp)
    print("arenas", open(f.name).read().count("<heap nr="))
barrier.wait()
for t in threads:
    t.join()
"""


def _arenas(limit: int) -> tuple[str, int]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run(
        [sys.executable, "-c", COUNT_ARENAS, str(limit)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout.split()
    return out[1], int(out[3])


@glibc
def test_the_arena_limit_takes_effect():
    assert _arenas(2) == ("True", 2)
    _, default = _arenas(0)  # 0: glibc's default, an arena per thread here
    assert default >= 9


def test_the_default_setting_limits_arenas():
    assert Settings(_env_file=None).malloc_arena_max == 2
    assert Settings(_env_file=None, malloc_arena_max=0).malloc_arena_max == 0


def test_serve_applies_the_setting_before_loading(monkeypatch, tmp_path):
    monkeypatch.setattr(os, "environ", {k: v for k, v in os.environ.items() if not k.startswith("PARAWAVE_")})
    (tmp_path / "fake").mkdir()
    (tmp_path / "fake" / "voice.json").write_text("{}")
    order: list[object] = []
    monkeypatch.setattr(allocator, "limit_arenas", lambda n: order.append(("arenas", n)))
    monkeypatch.setattr(state, "default_engine_loader", lambda s: order.append("load") or FakeEngine())
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda target, **kw: order.append("run"))
    os.environ["PARAWAVE_MALLOC_ARENA_MAX"] = "3"
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli_app, ["serve", "--voices-dir", str(tmp_path)])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert order[0] == ("arenas", 3) and order.index("load") < order.index("run")


@glibc
def test_metrics_show_the_heap(client):
    text = client.get("/metrics").text
    values = {
        line.split('"')[1]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("parawave_malloc_bytes{")
    }
    assert set(values) == {"in_use", "free", "mmapped"}
    assert values["in_use"] > 1e6 and values["free"] >= 0
