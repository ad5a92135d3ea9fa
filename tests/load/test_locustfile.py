"""The Locust file, run headless by Locust itself (a subprocess: Locust monkey-patches the stdlib
with gevent on import) for a few seconds against a real uvicorn server with the fake engine."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from fake_engine import FakeEngine, LiveServer, make_settings

from service.app import create_app

REPO = Path(__file__).resolve().parents[2]
LOCUSTFILE = REPO / "service" / "loadtest" / "locustfile.py"
LOCUST = shutil.which("locust", path=str(Path(sys.executable).parent)) or shutil.which("locust")


@pytest.mark.skipif(LOCUST is None, reason="locust is not installed (pip install -e '.[load]')")
def test_locust_runs_speech_and_reference_and_reports_ttfa(tmp_path):
    engine = FakeEngine(teacher_chunk=400)
    server = LiveServer(create_app(make_settings(), engine=engine)).start()
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PARAWAVE_", "LOCUST_"))}
        run = subprocess.run(
            [
                LOCUST, "-f", str(LOCUSTFILE), "--host", server.url, "--headless", "--users", "3",
                "--spawn-rate", "3", "--run-time", "5s", "--csv", str(tmp_path / "run"), "--only-summary",
                "--loglevel", "WARNING",
            ],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )  # fmt: skip
    finally:
        server.stop()
    assert run.returncode == 0, run.stdout + run.stderr
    rows = {(r["Type"], r["Name"]): r for r in csv.DictReader((tmp_path / "run_stats.csv").open())}
    speech = rows[("POST", "speech (stream)")]
    assert int(speech["Request Count"]) > 0 and int(speech["Failure Count"]) == 0
    # every successful request reported its time to first audio and full latency
    posted = [name for kind, name in rows if kind == "POST"]
    assert set(posted) <= {"speech (stream)", "speech (whole)", "reference (stream)"}
    for name in posted:
        count = int(rows[("POST", name)]["Request Count"])
        assert int(rows[("POST", name)]["Failure Count"]) == 0
        ttfa, latency = rows[("TTFA", name)], rows[("LATENCY", name)]
        assert int(ttfa["Request Count"]) == int(latency["Request Count"]) == count
        assert 0 < float(ttfa["Median Response Time"]) <= float(latency["Median Response Time"])
        assert float(ttfa["Average Content Size"]) > 0  # audio bytes
    assert rows[("", "Aggregated")]["Failure Count"] == "0"
    # the teacher was called through the reference endpoint
    if ("POST", "reference (stream)") in rows:
        assert any(call.model == "teacher" for call in engine.calls)
    assert any(call.model == "student" for call in engine.calls)
