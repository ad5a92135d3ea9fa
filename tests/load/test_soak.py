"""The chaos soak (``parawave soak``): its plan, its checks, and a short soak of a real ``parawave serve``
process on the shipped voice: no 5xx, every malformed request a 4xx in the OpenAI error envelope,
ready throughout, in flight back to 0 after every wave, and bounded RSS growth after warm-up."""

from __future__ import annotations

import asyncio
import json
import os
import random
from pathlib import Path

import pytest

from service.loadtest.soak import Soaker, check_envelope, parse_in_flight
from service.loadtest.soak_plan import MALFORMED, Planned, SoakConfig, plan_wave
from service.loadtest.soak_report import write_report
from service.loadtest.soak_server import MemorySource, ServedProcess, SoakError

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "voices"
# Generous on purpose (the soak's own bound is 5 % over thousands of requests): a smoke test against
# gross leaks (1 MiB per request fails it), steady on a loaded 2-core host (glibc's default arenas grew
# ~3 % over the same waves).
SHORT_SOAK_MAX_GROWTH_PCT = 10.0
SHORT_SOAK_MAX_HEAP_GROWTH_MB = 25.0  # the C heap in use wanders by a few MiB between waves


def test_the_plan_is_reproducible_and_mixes_everything():
    config = SoakConfig(url="http://127.0.0.1:1", requests=480)
    a = plan_wave(config, random.Random(7), 0, 480)
    b = plan_wave(config, random.Random(7), 0, 480)
    assert a == b and a != plan_wave(config, random.Random(8), 0, 480)
    modes = {p.mode for p in a}
    assert modes == {"whole", "stream", "sse", "malformed"}
    bodies = [json.loads(p.body) for p in a if p.mode != "malformed"]
    assert {b["response_format"] for b in bodies} == {"mp3", "opus", "aac", "flac", "wav", "pcm"}
    assert {b["model"] for b in bodies} == {"tts-1", "tts-1-hd"}
    streamed = [p for p in a if p.mode in ("stream", "sse")]
    aborted = [p for p in streamed if p.abort_at is not None]
    assert 0 < len(aborted) < len(streamed) and {p.abort_at for p in aborted} != {0}
    assert 0.08 < sum(p.mode == "malformed" for p in a) / len(a) < 0.25


def test_one_factor_at_a_time():
    config = SoakConfig(
        url="http://127.0.0.1:1",
        formats=("aac",),
        malformed_fraction=0.0,
        stream_fraction=1.0,
        abort_fraction=1.0,
    )
    plan = plan_wave(config, random.Random(0), 0, 50)
    assert all(p.mode in ("stream", "sse") and p.abort_at is not None for p in plan)
    assert {json.loads(p.body)["response_format"] for p in plan} == {"aac"}


def test_in_flight_and_envelope_parsing():
    text = (
        "# HELP parawave_in_flight Requests admitted and not finished.\n"
        'parawave_in_flight{model="student"} 2.0\nparawave_in_flight{model="teacher"} 1.0\n'
        'parawave_queue_depth{model="student"} 5.0\n'
    )
    assert parse_in_flight(text) == 3.0
    good = b'{"error": {"message": "no", "type": "invalid_request_error", "param": "input", "code": "x"}}'
    assert check_envelope(400, good) is None
    assert check_envelope(400, b'{"detail": "no"}') is not None
    assert check_envelope(500, b"Internal Server Error") is not None


def test_loopback_only():
    with pytest.raises(SoakError, match="loopback"):
        Soaker(SoakConfig(url="http://example.com:8000"), MemorySource(pid=os.getpid()))


def test_memory_of_a_process():
    rss = MemorySource(pid=os.getpid()).rss_mb()
    assert rss is not None and rss > 10
    assert MemorySource(pid=2**22 + 12345).rss_mb() is None


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    log = tmp_path_factory.mktemp("soak") / "server.log"
    server = ServedProcess(SHIPPED, log_path=log)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def test_every_malformed_request_is_a_4xx_in_the_envelope(served):
    config = SoakConfig(url=served.url)
    soaker = Soaker(config, MemorySource(pid=served.process.pid))

    async def all_cases():
        async with soaker._client() as client:
            plan = [
                Planned(i, "malformed", body, ctype, what=name)
                for i, (name, body, ctype, _) in enumerate(MALFORMED)
            ]
            return await asyncio.gather(*(soaker.one(client, p) for p in plan))

    outcomes = asyncio.run(all_cases())
    assert [(o.what, o.problem) for o in outcomes if o.problem] == []
    assert all(400 <= o.status < 500 for o in outcomes)


def test_short_soak_of_the_shipped_voice(served, tmp_path):
    config = SoakConfig(
        url=served.url,
        requests=6 * 12,
        concurrency=12,
        seed=3,
        warmup_waves=2,
        max_growth_pct=SHORT_SOAK_MAX_GROWTH_PCT,
    )
    report = asyncio.run(Soaker(config, MemorySource(pid=served.process.pid)).run())
    s, waves = report["summary"], report["waves"]
    assert s["waves"] == 6 and s["requests"] == 72
    assert s["status_5xx"] == 0, report["problems"]
    assert s["problems"] == 0, report["problems"]  # malformed: the expected 4xx in the envelope
    assert s["not_ready"] == 0 and s["ready_probes"] >= 6
    assert s["in_flight_not_settled"] == 0
    assert s["aborted"] > 0 and s["malformed"] > 0
    assert s["growth_after_warmup_pct"] < SHORT_SOAK_MAX_GROWTH_PCT, waves
    assert s["passed"]
    if waves[0]["heap_in_use_mb"] is not None:  # glibc: the C heap in use does not climb either
        in_use = [w["heap_in_use_mb"] for w in waves[config.warmup_waves :]]
        assert max(in_use) - in_use[0] < SHORT_SOAK_MAX_HEAP_GROWTH_MB, waves

    paths = write_report(report, tmp_path, "parawave soak (test)")
    rows = paths["tsv"].read_text().splitlines()
    assert rows[0].split("\t")[:4] == ["wave", "requests", "elapsed_s", "rss_mb"] and len(rows) == 1 + 7
    assert "PASS" in paths["markdown"].read_text()
    if "png" in paths:
        assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
