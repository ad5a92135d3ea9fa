"""Run an image's command the way its container would, without Docker.

The command is the final stage's ENTRYPOINT + CMD, the environment its ENV (``/opt/venv`` mapped to
this interpreter's environment, which has the same package installed), started in an empty
working directory (the image has no ``.env``). Only what ``docker run -p PORT:8000 -p WPORT:10200 -v
VOICES:/opt/parawave/voices:ro`` would change is changed: the ports (HTTP, Wyoming) and the voices folder.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from dockerfile_model import Dockerfile

IMAGE_VENV = "/opt/venv"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def container_env(df: Dockerfile, **overrides: str) -> dict[str, str]:
    """The final stage's ENV on top of this machine's environment (minus any PARAWAVE_*)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARAWAVE_")}
    for key, value in df.final.env.items():
        value = value.replace(IMAGE_VENV, sys.prefix)
        if key == "PATH":
            value = value.replace("$PATH", os.environ.get("PATH", "")).replace(
                "${PATH}", os.environ.get("PATH", "")
            )
        env[key] = value
    env.update(overrides)
    return env


def resolve_command(df: Dockerfile, env: dict[str, str]) -> list[str]:
    argv = df.command()
    assert argv, f"{df.path.name} has no CMD/ENTRYPOINT"
    exe = shutil.which(argv[0], path=env["PATH"])
    assert exe is not None, f"{argv[0]!r} (the image's command) is not on the image PATH {env['PATH']!r}"
    return [exe, *argv[1:]]


class ContainerProcess:
    """The image's command as a subprocess; ``url`` is where the published port would be."""

    def __init__(self, df: Dockerfile, voices_dir: Path, workdir: Path, **env_overrides: str) -> None:
        self.port = free_port()
        self.wyoming_port = free_port()  # the image serves Wyoming too: on its own port here
        self.env = container_env(
            df,
            PARAWAVE_PORT=str(self.port),
            PARAWAVE_VOICES_DIR=str(voices_dir),
            PARAWAVE_WYOMING_URI=f"tcp://127.0.0.1:{self.wyoming_port}",
            **env_overrides,
        )
        self.argv = resolve_command(df, self.env)
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = workdir / "container.log"
        self._log = self.log.open("wb")
        self.proc = subprocess.Popen(
            self.argv, cwd=workdir, env=self.env, stdout=self._log, stderr=subprocess.STDOUT
        )

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log.read_text(errors="replace")

    def wait_ready(self, timeout: float = 60.0) -> None:
        self._wait_for("/health/ready", timeout)

    def wait_live(self, timeout: float = 60.0) -> None:
        self._wait_for("/health/live", timeout)

    def _wait_for(self, path: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"the server exited with {self.proc.returncode}:\n{self.output()}")
            try:
                if httpx.get(f"{self.url}{path}", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"GET {path} not 200 after {timeout} s:\n{self.output()}")

    def wait_exit(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running after {timeout} s:\n{self.output()}") from None

    def stop(self, timeout: float = 15.0) -> int:
        """What ``docker stop`` does: SIGTERM, then SIGKILL after the grace period."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode


def wyoming_say(port: int, text: str, timeout: float = 120.0) -> tuple[dict, int, bytes]:
    """Over the Wyoming port on 127.0.0.1 (the ``wyoming`` package's client): ``describe``, then
    ``synthesize`` -> (the info event's data, the audio-start rate, the 16-bit PCM of the chunks).
    Every read is bounded by ``timeout``; an ``error`` event or a closed connection fails."""
    import asyncio

    from wyoming.audio import AudioChunk, AudioStart, AudioStop
    from wyoming.client import AsyncTcpClient
    from wyoming.info import Describe
    from wyoming.tts import Synthesize

    async def run() -> tuple[dict, int, bytes]:
        async with AsyncTcpClient("127.0.0.1", port, connect_timeout=timeout, read_timeout=timeout) as client:
            await client.write_event(Describe().event())
            info = await client.read_event()
            assert info is not None and info.type == "info", info
            await client.write_event(Synthesize(text=text).event())
            rate, pcm = 0, bytearray()
            while True:
                event = await client.read_event()
                assert event is not None and event.type != "error", event
                if AudioStart.is_type(event.type):
                    rate = AudioStart.from_event(event).rate
                elif AudioChunk.is_type(event.type):
                    chunk = AudioChunk.from_event(event)
                    assert (chunk.rate, chunk.width, chunk.channels) == (rate, 2, 1), chunk
                    pcm += chunk.audio
                elif AudioStop.is_type(event.type):
                    return info.data, rate, bytes(pcm)

    return asyncio.run(run())
