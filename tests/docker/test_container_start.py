"""The images' command and environment start the server exactly as the container would.

No Docker engine runs here, so each test takes the final stage's ENTRYPOINT/CMD and ENV from the
Dockerfile (tests/docker/dockerfile_model.py) and runs that command as a process with that
environment (tests/docker/container_run.py): only the published port and the voices folder (the
read-only volume) differ. The HEALTHCHECK command is run the same way against it.

Until the real engine and its fixture bundle exist, the server's engine loader is swapped for the
service tests' fake engine through a ``sitecustomize`` on PYTHONPATH: the command, its settings
and the uvicorn server are the real ones.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest
import soundfile as sf
from container_run import ContainerProcess, container_env, wyoming_say
from dockerfile_model import DOCKERFILES, REPO, image_path_to_repo, parse

SERVICE_TESTS = REPO / "tests" / "service"
FIXTURE_VOICES = REPO / "tests" / "fixtures" / "voices"

SHIM = textwrap.dedent(
    """
    # Test shim: parawave serve's engine loader returns the service tests' fake engine.
    import os
    import sys
    import threading

    sys.path.insert(0, os.environ["PARAWAVE_TEST_FAKE_ENGINE_DIR"])
    import fake_engine
    from service import state

    def _fake_loader(settings):
        print(f"fake engine: voices_dir={settings.voices_dir} device={settings.device} "
              f"host={settings.host}", file=sys.stderr, flush=True)
        gate = threading.Event() if os.environ.get("PARAWAVE_TEST_HOLD_WARMUP") else None
        return fake_engine.FakeEngine(warmup_gate=gate)

    state.default_engine_loader = _fake_loader
    """
)


@pytest.fixture
def fake_voices(tmp_path: Path) -> Path:
    """A voices folder that passes ``parawave serve``'s bundle check (the fake engine ignores it)."""
    voices = tmp_path / "voices"
    (voices / "fake").mkdir(parents=True)
    (voices / "fake" / "voice.json").write_text("{}")
    return voices


@pytest.fixture
def shim(tmp_path: Path) -> dict[str, str]:
    folder = tmp_path / "shim"
    folder.mkdir()
    (folder / "sitecustomize.py").write_text(SHIM)
    path = os.pathsep.join(p for p in (str(folder), os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": path, "PARAWAVE_TEST_FAKE_ENGINE_DIR": str(SERVICE_TESTS)}


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    path = tmp_path / "work"
    path.mkdir()
    return path


def healthcheck(df, port: int) -> subprocess.CompletedProcess:
    """The image's HEALTHCHECK command, with the container's environment (no shim)."""
    _, argv = df.final.healthcheck
    script = image_path_to_repo(df, argv[1])
    assert argv[0] == "python" and script is not None and script.exists(), argv
    env = container_env(df, PARAWAVE_PORT=str(port))
    return subprocess.run(
        [sys.executable, str(script), *argv[2:]], env=env, capture_output=True, text=True, timeout=30
    )


def test_cpu_image_command_serves_and_stops_cleanly(fake_voices, shim, workdir):
    df = parse(DOCKERFILES["cpu"])
    server = ContainerProcess(df, fake_voices, workdir, **shim)
    try:
        server.wait_ready(60)
        out = server.output()
        # the settings came from the image's ENV: device, and the host a container must bind
        assert f"voices_dir={fake_voices} device=cpu host=0.0.0.0" in out, out
        models = httpx.get(f"{server.url}/v1/models", timeout=10).json()["data"]
        assert {m["provider"] for m in models} == {"FakeExecutionProvider"}
        r = httpx.post(
            f"{server.url}/v1/audio/speech",
            json={"input": "Hello from the container.", "response_format": "wav"},
            timeout=30,
        )
        assert r.status_code == 200, r.text
        audio, rate = sf.read(io.BytesIO(r.content))
        assert rate == 16000 and len(audio) > 1000
        check = healthcheck(df, server.port)
        assert check.returncode == 0, check.stdout + check.stderr
        assert check.stdout.startswith("ready:")
        # the image serves Wyoming (Home Assistant) too, from the same process
        info, rate, pcm = wyoming_say(server.wyoming_port, "Hello over Wyoming.")
        assert [v["name"] for v in info["tts"][0]["voices"]] == ["fake", "other"]
        # the fake engine speaks 10 ms (160 samples) a character
        assert rate == 16000 and len(pcm) == 2 * 160 * len("Hello over Wyoming.")
    finally:
        code = server.stop()
    # docker stop = SIGTERM: a graceful shutdown (uvicorn re-raises the signal once done: 143 in Docker)
    out = server.output()
    assert code in (0, -signal.SIGTERM), out
    assert "Application shutdown complete" in out and "Traceback" not in out


def test_healthcheck_fails_until_warm_then_when_gone(fake_voices, shim, workdir):
    df = parse(DOCKERFILES["cpu"])
    server = ContainerProcess(df, fake_voices, workdir, PARAWAVE_TEST_HOLD_WARMUP="1", **shim)
    try:
        server.wait_live(60)  # the process answers but is not ready: its warm-up is held
        check = healthcheck(df, server.port)
        assert check.returncode == 1, check.stdout
        assert "HTTP 503" in check.stdout
    finally:
        server.stop()
    gone = healthcheck(df, server.port)
    assert gone.returncode == 1 and "not ready" in gone.stdout


def test_gpu_image_refuses_to_start_without_cuda(fake_voices, workdir):
    """The GPU image asks for CUDA and requires it: on a machine without it, one line and exit 2."""
    ort = pytest.importorskip("onnxruntime")
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has the CUDA provider: covered by the fixture-bundle test with -m gpu")
    df = parse(DOCKERFILES["gpu"])
    server = ContainerProcess(df, fake_voices, workdir)
    code = server.wait_exit(60)
    out = server.output()
    server.stop()
    assert code == 2, out
    assert "CUDA required" in out and "Traceback" not in out


@pytest.mark.parametrize("flavor", ["cpu", "gpu"])
def test_image_without_voices_says_so(flavor, tmp_path, workdir):
    """An image built from a checkout without voices (the builder creates an empty folder)."""
    empty = tmp_path / "empty-voices"
    empty.mkdir()
    server = ContainerProcess(parse(DOCKERFILES[flavor]), empty, workdir)
    code = server.wait_exit(60)
    out = server.output()
    server.stop()
    assert code == 2 and "no voice bundle" in out and "Traceback" not in out, out


def _fixture_bundle_missing() -> str | None:
    if not any(FIXTURE_VOICES.glob("*/voice.json")):
        return f"the fixture voice bundle is not there yet ({FIXTURE_VOICES.relative_to(REPO)}/<name>/voice.json)"
    if not (REPO / "service" / "engine.py").exists():
        return "the ONNX Runtime engine (service/engine.py) is not there yet"
    return None


@pytest.mark.skipif(_fixture_bundle_missing() is not None, reason=str(_fixture_bundle_missing()))
def test_cpu_image_serves_the_fixture_bundle_with_the_real_engine(workdir):
    df = parse(DOCKERFILES["cpu"])
    server = ContainerProcess(df, FIXTURE_VOICES, workdir)
    try:
        server.wait_ready(180)
        models = httpx.get(f"{server.url}/v1/models", timeout=10).json()["data"]
        assert {m["provider"] for m in models} == {"CPUExecutionProvider"}, models
        r = httpx.post(
            f"{server.url}/v1/audio/speech",
            json={"input": "The container speaks.", "response_format": "wav", "stream": True},
            timeout=120,
        )
        assert r.status_code == 200, r.text
        audio, rate = sf.read(io.BytesIO(r.content))
        assert rate == int(r.headers["x-sample-rate"]) and len(audio) > rate // 10
        assert healthcheck(df, server.port).returncode == 0
        _, wyoming_rate, pcm = wyoming_say(server.wyoming_port, "The container speaks.")
        assert wyoming_rate == rate and len(pcm) > 2 * rate // 10
    finally:
        assert server.stop() in (0, -signal.SIGTERM), server.output()
