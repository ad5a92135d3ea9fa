"""docker/docker-compose.yml up for real (Debian's docker-compose, or the compose plugin): the CPU
profile and the scaled CPU profile (two replicas behind nginx) come up healthy, serve (the CPU
service over HTTP and Wyoming), and go down.
The project file is the real one moved onto the host network (compose_engine.py says exactly how)."""

from __future__ import annotations

import re

import httpx
import pytest
from compose_engine import compose_cli, derive, nginx_image, wait_healthy
from container_run import wyoming_say


@pytest.fixture(scope="module")
def project(docker, cpu_image, tmp_path_factory):
    cli = compose_cli()
    if cli is None:
        pytest.skip("no docker compose plugin and no docker-compose (./run.sh test installs Debian's)")
    nginx = nginx_image(docker, docker.base_for("cpu"))
    p = derive(tmp_path_factory.mktemp("compose"), cli, cpu_image, nginx)
    yield p
    p.compose("--profile", "cpu", "--profile", "scale-cpu", "down", "--remove-orphans", check=False)


def _speak(url: str) -> None:
    r = httpx.post(
        f"{url}/v1/audio/speech", json={"input": "Composed.", "response_format": "wav"}, timeout=120
    )
    assert r.status_code == 200 and r.content[:4] == b"RIFF", (r.status_code, r.text[:300])


def _speech_requests(url: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return sum(
        float(v)
        for v in re.findall(
            r'^parawave_requests_total\{[^}]*route="/v1/audio/speech"[^}]*\} (\S+)$', text, re.M
        )
    )


def test_cpu_profile_up_healthy_serves_and_down(docker, project):
    project.compose("up", "-d", "parawave-cpu")
    try:
        wait_healthy(docker, project, ["parawave-cpu"])
        _speak(f"http://127.0.0.1:{project.ports['parawave-cpu']}")
        _, rate, pcm = wyoming_say(project.wyoming_ports["parawave-cpu"], "Composed over Wyoming.")
        assert rate > 0 and len(pcm) > rate  # over half a second of 16-bit audio
    finally:
        project.compose("--profile", "cpu", "down")
    assert project.compose("ps", "-q").stdout.strip() == ""


def test_scaled_cpu_profile_two_replicas_behind_nginx(docker, project):
    replicas = ["replica-cpu-1", "replica-cpu-2"]
    project.compose("up", "-d", "proxy-cpu")  # waits for both replicas to be healthy first
    try:
        wait_healthy(docker, project, [*replicas, "proxy-cpu"])
        proxy = f"http://127.0.0.1:{project.ports['proxy-cpu']}"
        assert httpx.get(f"{proxy}/proxy/health", timeout=10).text == "ok\n"
        for _ in range(4):
            _speak(proxy)
        served = [_speech_requests(f"http://127.0.0.1:{project.ports[r]}") for r in replicas]
        assert sum(served) == 4 and min(served) >= 1, served  # both replicas took requests
    finally:
        project.compose("--profile", "scale-cpu", "down")
    assert project.compose("ps", "-q").stdout.strip() == ""
