"""Fixtures for the tests that need a real Docker engine (tests/docker/docker_engine.py)."""

from __future__ import annotations

import pytest
from docker_engine import Docker, EngineUnavailable


@pytest.fixture(scope="session")
def docker():
    try:
        engine = Docker.connect()
    except EngineUnavailable as exc:
        pytest.skip(f"no Docker engine: {exc}")
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def build_logs(tmp_path_factory):
    return tmp_path_factory.mktemp("docker-build")


@pytest.fixture(scope="session")
def cpu_image(docker, build_logs):
    return docker.build("cpu", build_logs / "cpu.log")


@pytest.fixture(scope="session")
def gpu_image(docker, build_logs):
    return docker.build("gpu", build_logs / "gpu.log", timeout=3600)
