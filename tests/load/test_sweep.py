"""The concurrency sweep against a real uvicorn server on loopback (the service tests' fake engine,
whose audio length per sentence is known exactly), through its command line and in-process."""

from __future__ import annotations

import asyncio
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from fake_engine import RATE, FakeEngine, LiveServer, expected_audio, make_settings

from service.app import create_app
from service.loadtest import report as report_mod
from service.loadtest.sentences import SENTENCES, SHORT_SENTENCES
from service.loadtest.sweep import SweepConfig, Sweeper

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def server():
    servers: list[LiveServer] = []

    def make(engine: FakeEngine | None = None, **settings) -> LiveServer:
        s = LiveServer(create_app(make_settings(**settings), engine=engine or FakeEngine())).start()
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.stop()


def sweep_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARAWAVE_")}
    return subprocess.run(
        [sys.executable, "-m", "service.loadtest.sweep", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def in_flight(records: list[dict]) -> int:
    """The most requests in flight at once among ``records`` (each [start_s, start_s + latency_s);
    ends 1 us early: start_s is rounded to the microsecond)."""
    events = sorted(
        [(r["start_s"], 1) for r in records] + [(r["start_s"] + r["latency_s"] - 1e-6, -1) for r in records],
        key=lambda e: (e[0], e[1]),  # an end before a start at the same instant
    )
    most = now = 0
    for _, step in events:
        now += step
        most = max(most, now)
    return most


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_sweep_command_writes_a_consistent_report(server, tmp_path):
    s = server(FakeEngine(chunk_delay=0.005))
    out = tmp_path / "report"
    run = sweep_cli(
        "--url", s.url, "--concurrency", "1,2", "--duration", "1.5", "--warmup", "0.3", "--out", str(out)
    )
    assert run.returncode == 0, run.stderr
    report = json.loads((out / "report.json").read_text())
    records = [json.loads(line) for line in (out / "requests.jsonl").read_text().splitlines()]

    # what was run, on what
    assert report["config"]["concurrency"] == [1, 2] and report["config"]["path"] == "/v1/audio/speech"
    assert report["server"]["provider"] == "FakeExecutionProvider" and report["server"]["model"] == "student"
    assert report["hardware"]["cpu_count"] == os.cpu_count() and report["hardware"]["cpu_model"]
    assert report["stopped"] is None

    levels = report["levels"]
    assert [lv["concurrency"] for lv in levels] == [1, 2]
    for lv in levels:
        mine = [r for r in records if r["concurrency"] == lv["concurrency"]]
        assert lv["requests"] == len(mine) == lv["ok"] >= 3 and lv["errors"] == {}
        # only the measured window counts (the upper bound: the loop's scheduling, however loaded the host)
        assert all(0 <= r["start_s"] <= 1.5 + 1.0 for r in mine)
        # audio seconds come from the bytes received: exactly the fake engine's audio for that text
        for r in mine:
            assert r["status"] == 200 and r["error"] is None
            assert r["audio_s"] == pytest.approx(
                len(expected_audio(SENTENCES[r["text_id"]])) / RATE, abs=1e-9
            )
            assert 0 < r["ttfa_s"] <= r["latency_s"]
        audio = sum(r["audio_s"] for r in mine)
        assert lv["audio_s"] == pytest.approx(audio, abs=1e-3)
        assert lv["rt_multiple"] == pytest.approx(audio / lv["wall_s"], rel=1e-2)
        assert lv["requests_per_s"] == pytest.approx(lv["ok"] / lv["wall_s"], rel=1e-2)
        # the wall clock runs from the window's start to the end of the last request that started in it
        assert lv["wall_s"] == pytest.approx(max(r["start_s"] + r["latency_s"] for r in mine), abs=2e-3)
        t, lat = lv["ttfa_ms"], lv["latency_ms"]
        assert 0 < t["p50"] <= t["p95"] <= t["p99"] and 0 < lat["p50"] <= lat["p95"] <= lat["p99"]
        assert t["p50"] <= lat["p50"] and t["p99"] <= lat["p99"]
        ttfas = sorted(r["ttfa_s"] * 1000 for r in mine)
        assert ttfas[0] <= t["p50"] <= ttfas[-1]
    # one client slot vs two: one request in flight at a time, then two (from the records, not the clock)
    assert [in_flight([r for r in records if r["concurrency"] == c]) for c in (1, 2)] == [1, 2]

    md = (out / "report.md").read_text()
    assert "FakeExecutionProvider" in md and report["hardware"]["cpu_model"] in md
    rows = [line for line in md.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert [row.split("|")[1].strip() for row in rows] == ["1", "2"]
    assert rows[0].split("|")[4].strip() == f"{levels[0]['requests_per_s']:.2f}"
    assert md in run.stdout  # the table is printed too
    width, height = png_size(out / "report.png")
    assert width >= 800 and height >= 300


def test_errors_are_counted_by_status(server):
    """A server with room for 2 requests, 6 clients that do not wait: 429s, counted apart."""
    s = server(
        FakeEngine(chunk_delay=0.05), student_queue_size=1, student_workers=1, max_batch=1, retry_after_s=1
    )
    config = SweepConfig(url=s.url, concurrency=(6,), duration_s=1.0, warmup_s=0.0, respect_retry_after=False)
    report, records = asyncio.run(Sweeper(config).run())
    (level,) = report["levels"]
    assert level["errors"].get("429", 0) > 0 and level["ok"] > 0
    assert level["requests"] == level["ok"] + sum(level["errors"].values()) == len(records)
    assert all(r.status == 429 and r.audio_s == 0 for r in records if r.error == "429")
    assert "429: " in report_mod.render_markdown(report)


def test_retry_after_holds_the_slot(server):
    """Honouring Retry-After (the default), a rejected client waits: far fewer 429s."""
    s = server(
        FakeEngine(chunk_delay=0.05), student_queue_size=1, student_workers=1, max_batch=1, retry_after_s=1
    )
    config = SweepConfig(url=s.url, concurrency=(6,), duration_s=1.0, warmup_s=0.0)
    report, _ = asyncio.run(Sweeper(config).run())
    (level,) = report["levels"]
    assert 0 < level["errors"].get("429", 0) <= 6  # at most one rejection per slot in a 1 s window


def test_stop_when_ttfa_p95_passes_the_bound(server, tmp_path):
    s = server()
    out = tmp_path / "stopped"
    run = sweep_cli(
        "--url", s.url, "--concurrency", "1,2,4", "--duration", "0.5", "--warmup", "0",
        "--stop-when-ttfa-p95-ms", "0.001", "--out", str(out),
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    report = json.loads((out / "report.json").read_text())
    assert [lv["concurrency"] for lv in report["levels"]] == [1]
    assert report["stopped"]["at_concurrency"] == 1 and "> 0.001 ms" in report["stopped"]["reason"]
    assert "stopped at concurrency 1" in (out / "report.md").read_text()
    assert "stopped at concurrency 1" in run.stderr


def test_reference_endpoint_sweep(server):
    s = server(FakeEngine(teacher_chunk=400))
    config = SweepConfig(url=s.url, concurrency=(1,), duration_s=0.5, warmup_s=0.0, endpoint="reference")
    report, records = asyncio.run(Sweeper(config).run())
    assert report["server"]["model"] == "teacher" and report["config"]["path"] == "/v1/audio/speech/reference"
    assert records and all(r.ok for r in records)
    for r in records:  # short texts for the slow teacher, audio counted in full across its small chunks
        assert r.audio_s == pytest.approx(len(expected_audio(SHORT_SENTENCES[r.text_id])) / RATE, abs=1e-9)


def test_pcm_whole_responses(server):
    s = server()
    config = SweepConfig(
        url=s.url, concurrency=(2,), duration_s=0.5, warmup_s=0.0, response_format="pcm", stream=False
    )
    _, records = asyncio.run(Sweeper(config).run())
    assert records and all(r.ok for r in records)
    for r in records:
        assert r.audio_s == pytest.approx(len(expected_audio(SENTENCES[r.text_id])) / RATE, abs=1e-9)


def test_bad_arguments_and_unreachable_server_are_one_line(tmp_path):
    bad = sweep_cli("--concurrency", "1,x", "--out", str(tmp_path / "x"))
    assert bad.returncode == 2 and "error: --concurrency" in bad.stderr and "Traceback" not in bad.stderr
    fmt = sweep_cli("--format", "mp3", "--out", str(tmp_path / "x"))
    assert fmt.returncode == 2 and "--format must be wav or pcm" in fmt.stderr
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    gone = sweep_cli("--url", f"http://127.0.0.1:{port}", "--out", str(tmp_path / "x"))
    assert gone.returncode == 2 and "cannot reach" in gone.stderr and "Traceback" not in gone.stderr
    assert not (tmp_path / "x").exists()


def test_report_rerenders_from_json(server, tmp_path):
    s = server()
    config = SweepConfig(url=s.url, concurrency=(1,), duration_s=0.3, warmup_s=0.0)
    report, _ = asyncio.run(Sweeper(config).run())
    paths = report_mod.write_report(report, tmp_path / "a")
    (tmp_path / "a" / "report.md").unlink()
    (tmp_path / "a" / "report.png").unlink()
    assert report_mod.main([str(paths["json"])]) == 0
    assert (tmp_path / "a" / "report.md").read_text() == report_mod.render_markdown(report)
    assert png_size(tmp_path / "a" / "report.png")[0] > 0
    assert report_mod.main([str(tmp_path / "missing.json")]) == 2
