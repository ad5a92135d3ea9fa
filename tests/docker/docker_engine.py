"""A real Docker engine for the image tests: find or start one, make a base, build, run, wait.

- The engine: ``docker info`` answers, or (as root, with Debian's ``docker.io`` installed, which
  ``./run.sh test`` does) a ``dockerd`` started here, logging to ``/var/log/parawave-test-dockerd.log``
  and stopped again when the tests end. Anything else: the tests skip, saying why.
- Bases: the Dockerfiles' defaults (``python:3.11-slim-bookworm``, ``ubuntu:24.04``) when they are
  here or can be pulled; otherwise a base made from Debian's packages (``mmdebstrap bookworm`` with
  python3 + venv, then ``docker import``), which also carries this machine's CA bundle as the one
  pip trusts (``/etc/pip.conf``), so that pip inside the build reaches the package index through
  this machine's TLS setup. It is tagged by a hash of its recipe and that bundle, and kept: later
  runs reuse it.
- Builds use the classic builder (``DOCKER_BUILDKIT=0``; BuildKit would fetch the
  ``# syntax=docker/dockerfile:1`` frontend from Docker Hub) on the host network.
- Containers run on the host network (``--network host``); every request goes to 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOCKERD_LOG = Path("/var/log/parawave-test-dockerd.log")
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
DEBIAN_MIRROR = "http://deb.debian.org/debian"
BASE_PACKAGES = ("passwd", "ca-certificates", "python3", "python3-venv", "python-is-python3")
BASE_REPO = "parawave-test-base"
# Which build argument of each Dockerfile names its base, and the default it replaces.
BASE_ARGS = {"cpu": ("PYTHON_IMAGE", "python:3.11-slim-bookworm"), "gpu": ("BASE_IMAGE", "ubuntu:24.04")}
IMAGE_REPO = "parawave-test"


class EngineUnavailable(Exception):
    """No Docker engine can run here; the message is the skip reason."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


class Docker:
    """The ``docker`` command line against one engine."""

    def __init__(self, cli: str) -> None:
        self.cli = cli
        self.env = {**os.environ, "DOCKER_BUILDKIT": "0"}
        self._dockerd: subprocess.Popen[bytes] | None = None

    def run(self, *args: str, timeout: float = 120, check: bool = True, input: str | None = None) -> Result:
        p = subprocess.run(
            [self.cli, *args], capture_output=True, text=True, timeout=timeout, env=self.env, input=input
        )
        result = Result(p.returncode, p.stdout, p.stderr)
        if check and p.returncode != 0:
            raise AssertionError(
                f"docker {' '.join(args)} -> {p.returncode}:\n{p.stdout[-3000:]}{p.stderr[-3000:]}"
            )
        return result

    def alive(self) -> bool:
        try:
            return self.run("info", "--format", "{{.ServerVersion}}", timeout=20, check=False).returncode == 0
        except subprocess.TimeoutExpired:
            return False

    # -- the engine -------------------------------------------------------------------------------

    @classmethod
    def connect(cls) -> Docker:
        cli = shutil.which("docker")
        if cli is None:
            raise EngineUnavailable("no docker command (as root, ./run.sh test installs Debian's docker.io)")
        docker = cls(cli)
        if docker.alive():
            return docker
        dockerd = shutil.which("dockerd") or (
            "/usr/sbin/dockerd" if Path("/usr/sbin/dockerd").exists() else None
        )
        if dockerd is None:
            raise EngineUnavailable("no Docker engine answers and dockerd is not installed")
        if os.geteuid() != 0:
            raise EngineUnavailable("no Docker engine answers, and starting dockerd needs root")
        docker._start_dockerd(dockerd)
        return docker

    def _start_dockerd(self, dockerd: str) -> None:
        log = DOCKERD_LOG.open("ab")
        self._dockerd = subprocess.Popen(
            [dockerd], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self._dockerd.poll() is not None:
                tail = DOCKERD_LOG.read_text(errors="replace").strip().splitlines()[-3:]
                raise EngineUnavailable(f"dockerd exited with {self._dockerd.returncode}: {' | '.join(tail)}")
            if self.alive():
                return
            time.sleep(0.5)
        self._dockerd.terminate()
        raise EngineUnavailable(f"dockerd did not answer within 60 s (log: {DOCKERD_LOG})")

    def close(self) -> None:
        """Stop the dockerd started here (its images stay in /var/lib/docker for the next run)."""
        if self._dockerd is not None and self._dockerd.poll() is None:
            self._dockerd.terminate()
            try:
                self._dockerd.wait(30)
            except subprocess.TimeoutExpired:
                self._dockerd.kill()
                self._dockerd.wait(10)

    # -- images -----------------------------------------------------------------------------------

    def has_image(self, ref: str) -> bool:
        return self.run("image", "inspect", ref, check=False).returncode == 0

    def image_size(self, ref: str) -> int:
        return int(self.run("image", "inspect", "--format", "{{.Size}}", ref).stdout.strip())

    def base_for(self, flavor: str) -> str:
        """The base for ``Dockerfile.<flavor>``: its default if it is here or pullable, else a local one."""
        _, default = BASE_ARGS[flavor]
        if self.has_image(default):
            return default
        with contextlib.suppress(subprocess.TimeoutExpired):
            if self.run("pull", "--quiet", default, timeout=300, check=False).returncode == 0:
                return default
        return self.debian_base()

    def debian_base(self) -> str:
        """A bookworm base made from Debian's packages (made once, then reused by its tag)."""
        recipe = json.dumps([DEBIAN_MIRROR, BASE_PACKAGES]).encode()
        ca = HOST_CA_BUNDLE.read_bytes() if HOST_CA_BUNDLE.exists() else b""
        tag = f"{BASE_REPO}:bookworm-{hashlib.sha256(recipe + ca).hexdigest()[:12]}"
        if self.has_image(tag):
            return tag
        mmdebstrap = shutil.which("mmdebstrap")
        if mmdebstrap is None:
            raise EngineUnavailable(
                "the default bases cannot be pulled and mmdebstrap (to make one from Debian's packages) "
                "is not installed (as root, ./run.sh test installs it)"
            )
        hooks: list[str] = []
        if ca:
            hooks += [
                f'--customize-hook=cp {HOST_CA_BUNDLE} "$1/etc/ssl/certs/ca-certificates.crt"',
                '--customize-hook=printf "[global]\\ncert = /etc/ssl/certs/ca-certificates.crt\\n" > "$1/etc/pip.conf"',
            ]
        hooks.append('--customize-hook=rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*')
        strap = subprocess.Popen(
            [
                "nice", "-n", "10", mmdebstrap, "--quiet", "--variant=minbase",
                f"--include={','.join(BASE_PACKAGES)}", *hooks, "bookworm", "-", DEBIAN_MIRROR,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        imported = subprocess.run(
            [
                self.cli, "import",
                "--change", "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "--change", 'CMD ["bash"]', "-", tag,
            ],
            stdin=strap.stdout, capture_output=True, text=True, timeout=900, env=self.env,
        )  # fmt: skip
        strap.stdout.close()
        err = strap.stderr.read().decode(errors="replace")
        if strap.wait(60) != 0 or imported.returncode != 0:
            raise AssertionError(f"making the Debian base failed:\n{err[-3000:]}\n{imported.stderr[-2000:]}")
        return tag

    def build(self, flavor: str, log: Path, timeout: float = 1800) -> str:
        """Build ``docker/Dockerfile.<flavor>`` from the repository root; the image's tag."""
        arg, _ = BASE_ARGS[flavor]
        base = self.base_for(flavor)
        tag = f"{IMAGE_REPO}:{flavor}"
        argv = [
            "nice", "-n", "10", self.cli, "build", "--network", "host", "--build-arg", f"{arg}={base}",
            "-f", str(REPO / "docker" / f"Dockerfile.{flavor}"), "-t", tag, str(REPO),
        ]  # fmt: skip
        with log.open("w") as out:
            p = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, timeout=timeout, env=self.env)
        if p.returncode != 0:
            raise AssertionError(
                f"docker build ({flavor}) failed; the end of {log}:\n{log.read_text()[-4000:]}"
            )
        return tag

    # -- containers -------------------------------------------------------------------------------

    def inspect(self, name: str) -> dict:
        return json.loads(self.run("inspect", name).stdout)[0]

    def logs(self, name: str) -> str:
        r = self.run("logs", name, check=False)
        return r.stdout + r.stderr

    def wait_healthy(self, name: str, timeout: float) -> None:
        """Until the image's HEALTHCHECK says healthy; fails at once if it exits or turns unhealthy."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.inspect(name)["State"]
            health = (state.get("Health") or {}).get("Status")
            if health == "healthy":
                return
            if not state["Running"] or health == "unhealthy":
                raise AssertionError(
                    f"{name}: {state['Status']}, health {health}:\n{self.logs(name)[-4000:]}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"{name}: not healthy after {timeout} s:\n{self.logs(name)[-4000:]}")
            time.sleep(0.5)

    def wait_exit(self, name: str, timeout: float) -> int:
        return int(self.run("wait", name, timeout=timeout).stdout.strip())

    @contextlib.contextmanager
    def container(
        self, image: str, *args: str, name: str, env: dict[str, str] | None = None
    ) -> Iterator[str]:
        """``docker run -d --network host`` (``args`` before the image); removed afterwards."""
        self.run("rm", "-f", name, check=False)
        flags = [f"--env={k}={v}" for k, v in (env or {}).items()]
        self.run("run", "-d", "--name", name, "--network", "host", *flags, *args, image)
        try:
            yield name
        finally:
            self.run("rm", "-f", name, check=False, timeout=60)
