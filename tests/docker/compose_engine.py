"""docker/docker-compose.yml brought up for real, on this machine's host network.

The project file handed to Compose is docker/docker-compose.yml with only these changes (all of
them written out here, nothing else touched):

- Host network: every service gets ``network_mode: host`` (no ``ports``/``networks``), and every
  parawave service its own free ``PARAWAVE_PORT`` (its HEALTHCHECK reads the same variable) and
  Wyoming port (``PARAWAVE_WYOMING_URI`` on 127.0.0.1), so that all traffic stays on 127.0.0.1.
- Scale-out: on the host network two replicas of one service would fight for one port, so the
  ``replicas: N`` service becomes N services of one replica each, on their own ports; the proxy's
  nginx.conf is docker/nginx.conf with its one upstream ``server backend:8000 ...`` line written as
  one line per replica at 127.0.0.1:PORT (same parameters) and its ``listen`` on a free port.
- Images: the ones the tests built (``parawave-test:cpu``); the proxy's nginx from Debian's
  ``nginx-light`` on the local base (Docker Hub's nginx image cannot be pulled here).
- Health checks are asked every 2 s instead of 15 s (same command).
- For Debian's docker-compose 1.29 (which predates them): no top-level ``name`` (the project name
  is given with ``-p``), and optional ``env_file`` entries whose file is absent are left out (as
  Compose v2 does with ``required: false``).
"""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from compose_model import COMPOSE_FILE, load
from docker_engine import REPO, Docker, free_port

NGINX_CONF = REPO / "docker" / "nginx.conf"
NGINX_DOCKERFILE = Path(__file__).resolve().parent / "nginx-test.Dockerfile"
NGINX_IMAGE = "parawave-test-nginx:bookworm"
PROJECT = "parawave-test"


def compose_cli() -> list[str] | None:
    """``docker compose`` (v2 plugin) if it answers, else Debian's ``docker-compose``, else None."""
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


def nginx_image(docker: Docker, base: str) -> str:
    if not docker.has_image(NGINX_IMAGE):
        docker.run(
            "build", "--network", "host", "--build-arg", f"BASE={base}", "-t", NGINX_IMAGE,
            "-f", str(NGINX_DOCKERFILE), str(NGINX_DOCKERFILE.parent), timeout=600,
        )  # fmt: skip
    return NGINX_IMAGE


def upstream_conf(ports: list[int], listen: int) -> str:
    """docker/nginx.conf with the replicas at 127.0.0.1:PORT and the proxy listening on ``listen``."""
    conf = NGINX_CONF.read_text()
    (server,) = re.findall(r"^(\s*)server\s+backend:\d+(.*);$", conf, re.M)
    indent, params = server
    lines = "\n".join(f"{indent}server 127.0.0.1:{p}{params};" for p in ports)
    conf, n = re.subn(r"^\s*server\s+backend:\d+.*;$", lines, conf, count=1, flags=re.M)
    conf, m = re.subn(r"^(\s*)listen\s+\d+;", rf"\g<1>listen {listen};", conf, count=1, flags=re.M)
    assert n == m == 1
    return conf


@dataclass
class Project:
    """One derived project file and what it publishes where."""

    folder: Path
    cli: list[str]
    ports: dict[str, int] = field(default_factory=dict)  # service -> port on 127.0.0.1
    wyoming_ports: dict[str, int] = field(default_factory=dict)  # parawave service -> its Wyoming port
    file: Path | None = None

    def compose(self, *args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
        p = subprocess.run(
            [*self.cli, "-p", PROJECT, "-f", str(self.file), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "DOCKER_BUILDKIT": "0"},
        )
        if check and p.returncode != 0:
            raise AssertionError(
                f"compose {' '.join(args)} -> {p.returncode}:\n{p.stdout[-3000:]}{p.stderr[-3000:]}"
            )
        return p

    def container(self, service: str) -> str:
        ids = self.compose("ps", "-q", service).stdout.split()
        assert len(ids) == 1, (service, ids)
        return ids[0]


def derive(folder: Path, cli: list[str], image: str, nginx: str, replicas: int = 2) -> Project:
    """The project file described in the module docstring, written to ``folder``."""
    doc: dict[str, Any] = copy.deepcopy(load(env={"PARAWAVE_REPLICAS": str(replicas)}))
    doc.pop("name", None)
    project = Project(folder=folder, cli=cli)
    services: dict[str, Any] = {}
    for name, svc in doc["services"].items():
        svc = copy.deepcopy(svc)
        for key in ("ports", "networks", "build"):
            svc.pop(key, None)
        svc["network_mode"] = "host"
        if "healthcheck" in svc:
            svc["healthcheck"]["interval"] = "2s"
        files = []
        for entry in svc.pop("env_file", []):
            path = entry if isinstance(entry, str) else entry["path"]
            if (COMPOSE_FILE.parent / path).exists() or (
                isinstance(entry, dict) and entry.get("required", True)
            ):
                files.append(str((COMPOSE_FILE.parent / path).resolve()))
        if files:
            svc["env_file"] = files
        for volume in svc.get("volumes", []):
            if volume.get("type") == "bind":
                volume["source"] = str((COMPOSE_FILE.parent / volume["source"]).resolve())
        if svc.get("image", "").startswith("parawave:"):
            if svc["image"] != "parawave:cpu":
                continue  # GPU services: not on this machine
            svc["image"] = image
            count = svc.get("deploy", {}).pop("replicas", 1)
            if not svc.get("deploy"):
                svc.pop("deploy", None)
            for i in range(1, count + 1):
                one = copy.deepcopy(svc)
                sname = name if count == 1 else f"{name}-{i}"
                project.ports[sname] = free_port()
                project.wyoming_ports[sname] = free_port()
                one["environment"] = {
                    **one.get("environment", {}),
                    "PARAWAVE_PORT": str(project.ports[sname]),
                    "PARAWAVE_WYOMING_URI": f"tcp://127.0.0.1:{project.wyoming_ports[sname]}",
                }
                services[sname] = one
        else:
            services[name] = svc
    for name, svc in list(services.items()):
        deps = svc.get("depends_on")
        if not deps:
            continue
        if any(d not in services and f"{d}-1" not in services for d in deps):
            del services[name]  # a proxy of GPU replicas
            continue
        expanded = {}
        for dep, cfg in deps.items():
            replicas_of = [s for s in services if s == dep or re.fullmatch(rf"{re.escape(dep)}-\d+", s)]
            expanded.update({r: cfg for r in replicas_of})
        svc["depends_on"] = expanded
        listen = free_port()
        project.ports[name] = listen
        conf = folder / f"{name}.nginx.conf"
        conf.write_text(upstream_conf([project.ports[r] for r in expanded], listen))
        svc["image"] = nginx
        (mount,) = [v for v in svc["volumes"] if v["target"] == "/etc/nginx/nginx.conf"]
        mount["source"] = str(conf)
        svc["healthcheck"]["test"] = [re.sub(r":\d+/", f":{listen}/", t) for t in svc["healthcheck"]["test"]]
        svc["healthcheck"]["interval"] = "2s"
    doc["services"] = services
    project.file = folder / "docker-compose.host-network.yml"
    project.file.write_text(yaml.safe_dump(doc, sort_keys=False))
    return project


def wait_healthy(docker: Docker, project: Project, services: list[str], timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    for service in services:
        docker.wait_healthy(project.container(service), timeout=max(1.0, deadline - time.monotonic()))


def main(argv: list[str] | None = None) -> int:
    """``python tests/docker/compose_engine.py sweep -- SWEEP_ARGS``: the scaled CPU profile up (two
    replicas behind nginx, images built as the tests build them), the load sweep through the proxy
    (``python -m service.loadtest.sweep --url PROXY SWEEP_ARGS``), then down."""
    import sys
    import tempfile

    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] != "sweep":
        print(main.__doc__)
        return 2
    sweep_args = [a for a in args[1:] if a != "--"]
    docker = Docker.connect()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            image = docker.build("cpu", Path(tmp) / "build.log")
            cli = compose_cli()
            assert cli, "no docker compose"
            project = derive(Path(tmp), cli, image, nginx_image(docker, docker.base_for("cpu")))
            project.compose("up", "-d", "proxy-cpu")
            try:
                wait_healthy(docker, project, ["replica-cpu-1", "replica-cpu-2", "proxy-cpu"])
                url = f"http://127.0.0.1:{project.ports['proxy-cpu']}"
                print(
                    f"proxy {url} over replicas {project.ports['replica-cpu-1']}, {project.ports['replica-cpu-2']}"
                )
                return subprocess.run(
                    [sys.executable, "-m", "service.loadtest.sweep", "--url", url, *sweep_args]
                ).returncode
            finally:
                project.compose("--profile", "scale-cpu", "down")
    finally:
        docker.close()


if __name__ == "__main__":
    raise SystemExit(main())
