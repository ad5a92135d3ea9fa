"""The images, built and run by a real Docker engine (skipped, with the reason, where none can run).

Both images are built from this checkout (on a local Debian base where Docker Hub is out of reach:
docker_engine.py). The CPU image runs as it ships (baked-in voices), on the host network, and must
turn healthy by its own HEALTHCHECK, speak every format and Wyoming, run as uid 10001, and finish a streaming
request when ``docker stop`` arrives in the middle of it. It also runs the way the Kubernetes
manifests run it: read-only root filesystem with only /tmp writable, no capabilities, voices from a
read-only volume. The GPU image (several GB of CUDA wheels: ``slow``) must refuse to start on a
machine without CUDA, with one error line.
"""

from __future__ import annotations

import importlib.util
import threading

import httpx
import pytest
from container_run import wyoming_say
from docker_engine import REPO, Docker, free_port

from service.audio import FORMATS

_spec = importlib.util.spec_from_file_location("audio_decode", REPO / "tests" / "service" / "audio_decode.py")
audio_decode = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(audio_decode)

UID = "10001"
HEALTH_POLL = "--health-interval=2s"  # the image's own check, asked every 2 s instead of 15 s
# About 30 s of speech: long enough to be mid-stream when the stop arrives, short enough to finish
# inside the server's graceful-shutdown window on a busy 2-core machine.
LONG_TEXT = (
    "When the signal to stop arrives, the server finishes what it has started. This sentence is "
    "still being spoken while the container is asked to shut down, and every sample of it must "
    "reach the client before the process exits. Only then does the container stop, cleanly, with "
    "nothing cut short and no error in its log. A second paragraph keeps it going a little longer: "
    "the load balancer has already taken this replica out of rotation, and the clients it still "
    "serves hear their sentences to the end."
)
K8S_LIKE = (
    "--read-only",
    "--tmpfs=/tmp:rw,exec,nosuid,nodev,size=64m",  # exec: phonemizer dlopens a copy of libespeak-ng from /tmp
    "--cap-drop=ALL",
    "--security-opt=no-new-privileges",
    f"--volume={REPO / 'voices'}:/opt/parawave/voices:ro",
)


def _speak(url: str, fmt: str, text: str = "Hello from the container.", **extra) -> httpx.Response:
    r = httpx.post(
        f"{url}/v1/audio/speech",
        json={"input": text, "response_format": fmt, **extra},
        timeout=120,
    )
    assert r.status_code == 200, (fmt, r.status_code, r.text[:500])
    return r


def _uids(docker: Docker, name: str) -> set[str]:
    """Real, effective, saved and filesystem uid of the container's first process."""
    status = docker.run("exec", name, "cat", "/proc/1/status").stdout
    (line,) = [x for x in status.splitlines() if x.startswith("Uid:")]
    return set(line.split()[1:])


def test_cpu_image_turns_healthy_speaks_every_format_as_uid_10001(docker, cpu_image):
    port, wyoming_port = free_port(), free_port()
    env = {"PARAWAVE_PORT": str(port), "PARAWAVE_WYOMING_URI": f"tcp://127.0.0.1:{wyoming_port}"}
    with docker.container(cpu_image, HEALTH_POLL, name="parawave-test-cpu", env=env) as c:
        docker.wait_healthy(c, timeout=240)
        url = f"http://127.0.0.1:{port}"
        assert docker.inspect(c)["Config"]["User"] == f"{UID}:{UID}"
        assert _uids(docker, c) == {UID}
        assert docker.run("exec", c, "id", "-u").stdout.strip() == UID
        models = httpx.get(f"{url}/v1/models", timeout=10).json()["data"]
        assert {m["provider"] for m in models} == {"CPUExecutionProvider"}, models
        rate = None
        for fmt in FORMATS:
            r = _speak(url, fmt)
            rate = rate or int(r.headers["x-sample-rate"])
            audio, got_rate = audio_decode.decode(r.content, fmt, rate)
            assert got_rate == rate, fmt
            assert len(audio) > rate // 2 and float(abs(audio).max()) > 0.01, (fmt, len(audio))
        # Wyoming (Home Assistant) from the same container: describe lists the baked-in voices, and
        # synthesize answers 16-bit mono at the voice's rate
        info, wyoming_rate, pcm = wyoming_say(wyoming_port, "Hello over Wyoming.")
        voices = httpx.get(f"{url}/health/ready", timeout=10).json()["voices"]
        assert [v["name"] for v in info["tts"][0]["voices"]] == voices
        audio, _ = audio_decode.decode(pcm, "pcm", wyoming_rate)
        assert wyoming_rate == rate and len(audio) > rate // 2 and float(abs(audio).max()) > 0.01
        bad = httpx.post(f"{url}/v1/audio/speech", json={"input": "x", "response_format": "ogg"}, timeout=30)
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "response_format", bad.text
        assert "Traceback" not in docker.logs(c)


def test_cpu_image_runs_read_only_and_drains_a_stream_on_docker_stop(docker, cpu_image):
    """As the Kubernetes manifests run it (read-only root, /tmp an emptyDir, no capabilities, voices
    from a read-only volume); `docker stop` mid-stream: the stream completes, then the process exits."""
    port = free_port()
    name = "parawave-test-drain"
    env = {"PARAWAVE_PORT": str(port), "PARAWAVE_WYOMING_URI": f"tcp://127.0.0.1:{free_port()}"}
    with docker.container(cpu_image, HEALTH_POLL, *K8S_LIKE, name=name, env=env) as c:
        docker.wait_healthy(c, timeout=240)
        url = f"http://127.0.0.1:{port}"
        whole = _speak(url, "pcm", LONG_TEXT).content  # the same request, undisturbed

        first_chunk = threading.Event()
        got: dict[str, object] = {}

        def stream() -> None:
            body = bytearray()
            try:
                with httpx.stream(
                    "POST",
                    f"{url}/v1/audio/speech",
                    json={"input": LONG_TEXT, "response_format": "pcm", "stream": True},
                    timeout=120,
                ) as r:
                    got["status"] = r.status_code
                    for chunk in r.iter_bytes():
                        body += chunk
                        first_chunk.set()
            except Exception as exc:
                got["error"] = exc
            finally:
                got["body"] = bytes(body)
                first_chunk.set()

        client = threading.Thread(target=stream)
        client.start()
        assert first_chunk.wait(120), "no audio chunk arrived"
        assert "error" not in got, got.get("error")
        still_streaming = client.is_alive()
        docker.run("stop", "--time=60", c, timeout=90)  # SIGTERM, SIGKILL only after 60 s
        client.join(60)
        assert not client.is_alive()
        state = docker.inspect(c)["State"]
        logs = docker.logs(c)
        assert "error" not in got, f"{got['error']!r}\n{logs[-3000:]}"
        assert got["status"] == 200
        assert still_streaming, "the stream had already ended before docker stop: make LONG_TEXT longer"
        assert len(got["body"]) == len(whole) > 16000 * 2 * 10, (len(got["body"]), len(whole))
        # uvicorn re-raises SIGTERM after its graceful shutdown (143); 137 would be Docker's SIGKILL
        assert not state["OOMKilled"] and state["ExitCode"] in (0, 143), (state, logs[-3000:])
        assert "Application shutdown complete" in logs and "Traceback" not in logs, logs[-3000:]


@pytest.mark.slow
def test_gpu_image_refuses_to_start_without_cuda(docker, gpu_image):
    """On this machine (no NVIDIA runtime, no GPU) the GPU image exits 2 with one line saying why."""
    with docker.container(gpu_image, name="parawave-test-gpu") as c:
        code = docker.wait_exit(c, timeout=180)
        logs = docker.logs(c)
    assert code == 2, logs
    # parawave's own output is the one error line; ONNX Runtime's native log (its attempts to load
    # libcuda, in its own "[W:onnxruntime" / "[E:onnxruntime" format) may come before it
    ours = [line for line in logs.splitlines() if line.strip() and ":onnxruntime:" not in line]
    ours = [line for line in ours if not line.startswith(("[m", "\x1b[m"))]
    errors = [line for line in ours if line.startswith("error:")]
    assert len(errors) == 1 and "CUDA" in errors[0], logs
    assert "Traceback" not in logs, logs
