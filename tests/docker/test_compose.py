"""docker/docker-compose.yml: valid against the Compose Specification, and the services the README's
commands start are wired as intended (GPU reservation, CPU profile, health checks, settings,
read-only voices, replicas behind nginx). See compose_model.py for the schema's source."""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml
from compose_model import COMPOSE_FILE, REPO, depends_on, load, schema_errors, started
from dockerfile_model import parse

from service.settings import Settings

NGINX_CONF = REPO / "docker" / "nginx.conf"
PARAWAVE_SERVICES = ("parawave", "parawave-cpu", "replica", "replica-cpu")
GPU_SERVICES = ("parawave", "replica")
ONE_NVIDIA_GPU = {"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}


@pytest.fixture(scope="module")
def compose() -> dict:
    return load(env={})  # interpolated with the defaults, as with an empty shell environment


def _dockerfile(service: dict) -> Path:
    build = service["build"]
    return (COMPOSE_FILE.parent / build["context"] / build["dockerfile"]).resolve()


def test_compose_file_matches_the_compose_spec():
    assert schema_errors(load()) == []  # as written (with ${...} in it)
    assert schema_errors(load(env={})) == []  # interpolated with the defaults
    custom = {
        "PARAWAVE_REPLICAS": "4",
        "PARAWAVE_PROXY_PORT": "9000",
        "PARAWAVE_VOICES_HOST_DIR": "/srv/voices",
    }
    document = load(env=custom)
    assert schema_errors(document) == []
    assert document["services"]["replica"]["deploy"]["replicas"] == 4
    assert document["services"]["proxy"]["ports"] == ["9000:8080"]


@pytest.mark.parametrize(
    "mutate, where",
    [
        (lambda d: d["services"]["parawave"].update(restart_policy="always"), "services/parawave"),
        (
            lambda d: d["services"]["parawave"]["deploy"]["resources"]["reservations"]["devices"][0].update(
                capabilities="gpu"
            ),
            "capabilities",
        ),
        (lambda d: d["services"]["proxy"]["healthcheck"].update(interval=15), "interval"),
    ],
)
def test_the_schema_check_can_fail(mutate, where):
    document = copy.deepcopy(load(env={}))
    mutate(document)
    errors = schema_errors(document)
    assert errors and any(where in e for e in errors), errors


@pytest.mark.parametrize(
    "targets, expected",
    [
        ((), {"parawave"}),  # docker compose up: one GPU
        (("parawave-cpu",), {"parawave-cpu"}),  # CPU only
        (("proxy",), {"proxy", "replica"}),  # GPU replicas + nginx
        (("proxy-cpu",), {"proxy-cpu", "replica-cpu"}),  # CPU replicas + nginx
    ],
)
def test_the_readme_commands_start_these_services(compose, targets, expected):
    assert started(compose, targets) == expected
    readme = (REPO / "README.md").read_text()
    command = "docker compose -f docker/docker-compose.yml up -d" + "".join(f" {t}" for t in targets)
    assert re.search(re.escape(command) + r"\s", readme), command


def test_profiles_alone_are_consistent(compose):
    """`--profile X up` and `--profile X down` work for every profile (Compose's dependency check)."""
    for profile in ("cpu", "scale", "scale-cpu"):
        assert started(compose, profiles=(profile,))
    with pytest.raises(ValueError, match="depends on undefined service"):  # the check itself can fail
        broken = copy.deepcopy(compose)
        broken["services"]["parawave"]["depends_on"] = {"replica": {"condition": "service_healthy"}}
        started(broken)


def test_gpu_services_reserve_one_nvidia_gpu_and_cpu_services_none(compose):
    for name in PARAWAVE_SERVICES:
        service = compose["services"][name]
        devices = service.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices")
        flavor = "gpu" if name in GPU_SERVICES else "cpu"
        assert _dockerfile(service) == REPO / "docker" / f"Dockerfile.{flavor}", name
        assert service["image"] == f"parawave:{flavor}"
        if flavor == "gpu":
            assert devices == [ONE_NVIDIA_GPU], name
        else:
            assert devices is None, name
            assert not profiles_free(service), f"{name}: a CPU service must not start on a plain `up`"


def profiles_free(service: dict) -> bool:
    return not service.get("profiles")


@pytest.mark.parametrize("name", PARAWAVE_SERVICES)
def test_parawave_services_health_restart_voices_settings(compose, name):
    service = compose["services"][name]
    image = parse(_dockerfile(service)).final
    assert service["restart"] in ("unless-stopped", "always")
    # health: the image's own check, with a start period covering load + warm-up
    _, argv = image.healthcheck
    health = service["healthcheck"]
    assert health["test"] == ["CMD", *argv]
    assert int(health["start_period"].removesuffix("s")) >= 60
    # voices: a read-only bind mount over the folder the image bakes them into and serves from
    (mount,) = [v for v in service["volumes"] if v["target"] == image.env["PARAWAVE_VOICES_DIR"]]
    assert mount["type"] == "bind" and mount["read_only"] is True
    assert (COMPOSE_FILE.parent / mount["source"]).resolve() == REPO / "voices"
    # settings: image ENV + the optional env file + compose environment, all real PARAWAVE_* settings
    assert service["env_file"] == [{"path": "parawave.env", "required": False}]
    env = {**image.env, **service.get("environment", {})}
    ours = {k.removeprefix("PARAWAVE_").lower(): v for k, v in env.items() if k.startswith("PARAWAVE_")}
    assert set(ours) <= set(Settings.model_fields), set(ours) - set(Settings.model_fields)
    settings = Settings(_env_file=None, **ours)
    assert settings.device == ("cuda" if name in GPU_SERVICES else "cpu")
    assert settings.host == "0.0.0.0"
    # published: HTTP, and Wyoming where the service stands alone (nginx in front of replicas is HTTP only)
    wyoming = urlparse(settings.wyoming_uri)
    assert (wyoming.scheme, wyoming.hostname, wyoming.port) == ("tcp", "0.0.0.0", 10200)
    targets = sorted(int(p.rsplit(":", 1)[1]) for p in service.get("ports", []))
    assert targets == ([] if name.startswith("replica") else sorted([settings.port, wyoming.port])), targets


def test_scale_out_replicas_behind_nginx(compose):
    services = compose["services"]
    conf = NGINX_CONF.read_text()
    (upstream,) = re.findall(r"^\s*server\s+([\w.-]+):(\d+)", conf, re.M)
    (listen,) = re.findall(r"^\s*listen\s+(\d+);", conf, re.M)
    for replica, proxy in (("replica", "proxy"), ("replica-cpu", "proxy-cpu")):
        r, p = services[replica], services[proxy]
        assert upstream[0] in r["networks"]["default"]["aliases"]
        assert upstream[1] == parse(_dockerfile(r)).final.env["PARAWAVE_PORT"]
        assert r["deploy"]["replicas"] == 2 and "ports" not in r
        assert depends_on(p) == {replica: {"condition": "service_healthy", "required": True}}
        assert p["ports"] == [f"8080:{listen}"]
        (conf_mount,) = p["volumes"]
        assert (COMPOSE_FILE.parent / conf_mount["source"]).resolve() == NGINX_CONF
        assert conf_mount["target"] == "/etc/nginx/nginx.conf" and conf_mount["read_only"] is True
        assert p["restart"] == "unless-stopped" and p["healthcheck"]["test"][0] == "CMD"
        health_path = p["healthcheck"]["test"][-1].split(f":{listen}", 1)[1]
        assert re.search(rf"location = {re.escape(health_path)} \{{", conf)


def test_yaml_anchors_resolve_to_plain_compose(compose):
    """Compose resolves anchors and merge keys like PyYAML: no merge key or alias survives."""
    dumped = yaml.safe_dump(compose)
    assert "<<" not in dumped and "&" not in dumped


@pytest.mark.skipif(
    shutil.which("docker") is None
    or subprocess.run(["docker", "compose", "version"], capture_output=True).returncode != 0,
    reason="the docker compose plugin is not installed here (the schema test above covers the file)",
)
def test_docker_compose_config_accepts_it():
    for args in ([], ["--profile", "cpu"], ["--profile", "scale"], ["--profile", "scale-cpu"]):
        out = subprocess.run(
            ["docker", "compose", "-f", str(COMPOSE_FILE), *args, "config", "--quiet"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
