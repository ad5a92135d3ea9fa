"""The server a soak watches (:mod:`service.loadtest.soak`): its memory (:class:`MemorySource`: a
process's RSS, a container's cgroup) and, for ``--serve``, a ``parawave serve`` process of its own
(:class:`ServedProcess`)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path


class SoakError(RuntimeError):
    """The soak cannot run (not loopback, server unreachable or not ready, no memory source): one line."""


class MemorySource:
    """The server's memory: ``VmRSS`` of a process, plus a cgroup's ``memory.current`` when known."""

    def __init__(self, pid: int | None = None, cgroup: Path | None = None, label: str = "") -> None:
        self.pid = pid
        self.cgroup = cgroup
        self.label = label or (f"pid {pid}" if pid else str(cgroup))

    @classmethod
    def for_container(cls, name: str) -> MemorySource:
        """The container's main process (its pid as the host sees it) and its cgroup (v2 or v1)."""
        docker = shutil.which("docker")
        if docker is None:
            raise SoakError("--container needs the docker command")
        try:
            pid = int(
                subprocess.run(
                    [docker, "inspect", "-f", "{{.State.Pid}}", name],
                    capture_output=True,
                    text=True,
                    check=True,
                    timeout=30,
                ).stdout.strip()
            )
        except (subprocess.SubprocessError, ValueError) as exc:
            raise SoakError(f"cannot find container {name!r}: {exc}") from None
        return cls(pid=pid, cgroup=_cgroup_of(pid), label=f"container {name} (pid {pid})")

    def rss_mb(self) -> float | None:
        if self.pid is None:
            return None
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0  # kB -> MiB
        except (OSError, ValueError):
            return None
        return None

    def cgroup_mb(self) -> float | None:
        """The cgroup's memory use less its inactive page cache, as ``docker stats`` counts it."""
        if self.cgroup is None:
            return None
        for name, inactive in (
            ("memory.current", "inactive_file"),
            ("memory.usage_in_bytes", "total_inactive_file"),
        ):
            try:
                used = int((self.cgroup / name).read_text().strip())
            except (OSError, ValueError):
                continue
            try:
                stat = dict(line.split() for line in (self.cgroup / "memory.stat").read_text().splitlines())
                used -= int(stat.get(inactive, 0))
            except (OSError, ValueError):
                pass
            return used / (1 << 20)
        return None


def _cgroup_of(pid: int) -> Path | None:
    """The memory cgroup folder of ``pid``: v1's memory controller when mounted, else v2's."""
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return None
    found = []
    for line in lines:
        hier, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):  # v1 (or hybrid)
            found.insert(0, Path("/sys/fs/cgroup/memory") / path.lstrip("/"))
        elif hier == "0" and controllers == "":  # v2 (unified, or hybrid's unified mount)
            found += [
                Path("/sys/fs/cgroup") / path.lstrip("/"),
                Path("/sys/fs/cgroup/unified") / path.lstrip("/"),
            ]
    return next(
        (p for p in found if (p / "memory.current").exists() or (p / "memory.usage_in_bytes").exists()), None
    )


class ServedProcess:
    """``python -m service.cli serve`` on a free loopback port, in its own process (so its memory is its own)."""

    def __init__(
        self,
        voices_dir: Path | None = None,
        env: Mapping[str, str] | None = None,
        log_path: Path | None = None,
    ) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        args = [sys.executable, "-m", "service.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        args += ["--device", "cpu", "--log-level", "warning"]
        if voices_dir is not None:
            args += ["--voices-dir", str(voices_dir)]
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("PARAWAVE_")}
        full_env.update(env or {})
        self._log = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(args, env=full_env, stdout=self._log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout_s: float = 300.0) -> None:
        import httpx

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SoakError(f"the server exited ({self.process.returncode}) before it was ready")
            try:
                if httpx.get(f"{self.url}/health/ready", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise SoakError(f"the server was not ready after {timeout_s:g} s")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log is not subprocess.DEVNULL:
            self._log.close()
