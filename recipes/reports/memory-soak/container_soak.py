"""Issue 40: the CPU image under the soak. Builds docker/Dockerfile.cpu (the tests' Docker helpers: a dockerd
started here when none answers, a Debian-made base when Docker Hub is out of reach), runs it on the host
network, and soaks it with `parawave soak --container` (RSS of its main process and its cgroup's memory).

    python recipes/reports/memory-soak/container_soak.py build
    CONTAINER_ENV="PARAWAVE_REQUEST_TIMEOUT_S=600" python recipes/reports/memory-soak/container_soak.py soak \
        --requests 5000 --duration 1800 --concurrency 24 --seed 0 --timeout 900 --out recipes/reports/memory-soak/container-soak
"""

import os
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO_ROOT / "tests" / "docker"))
from docker_engine import REPO, Docker, free_port  # noqa: E402

stage = sys.argv[1]  # build | soak
args = sys.argv[2:]
docker = Docker.connect()
tag = "parawave-issue40:cpu"
name = "parawave-soak40"
try:
    if stage == "build":
        base = docker.base_for("cpu")
        print("base", base, flush=True)
        t0 = time.time()
        argv = [
            "nice",
            "-n",
            "10",
            docker.cli,
            "build",
            "--network",
            "host",
            "--build-arg",
            f"PYTHON_IMAGE={base}",
            "-f",
            str(REPO / "docker" / "Dockerfile.cpu"),
            "-t",
            tag,
            str(REPO),
        ]
        p = subprocess.run(argv, env=docker.env)
        print("build rc", p.returncode, "in", round(time.time() - t0), "s", flush=True)
        sys.exit(p.returncode)
    port = free_port()
    docker.run("rm", "-f", name, check=False)
    docker.run(
        "run",
        "-d",
        "--name",
        name,
        "--network",
        "host",
        "-e",
        f"PARAWAVE_PORT={port}",
        "-e",
        "PARAWAVE_HOST=127.0.0.1",
        *[a for e in os.environ.get("CONTAINER_ENV", "").split() for a in ("-e", e)],
        tag,
    )
    url = f"http://127.0.0.1:{port}"
    import httpx

    deadline = time.time() + 600
    while time.time() < deadline:
        try:
            if httpx.get(url + "/health/ready", timeout=5).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(1)
    print("ready", url, flush=True)
    rc = subprocess.run(
        [
            "nice",
            "-n",
            "5",
            sys.executable,
            "-m",
            "service.cli",
            "soak",
            "--url",
            url,
            "--container",
            name,
            *args,
        ],
        cwd=REPO_ROOT,
    ).returncode
    print("soak rc", rc, flush=True)
finally:
    if stage != "build":
        docker.run("rm", "-f", name, check=False)
    docker.close()
