"""``parawave serve``: settings from options, clear one-line errors, uvicorn started on the app factory."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from service.cli import app
from service.settings import get_settings

runner = CliRunner()


@pytest.fixture
def isolated_env(monkeypatch):
    """serve writes PARAWAVE_* into os.environ (for worker processes): give it a throwaway copy."""
    monkeypatch.setattr(os, "environ", {k: v for k, v in os.environ.items() if not k.startswith("PARAWAVE_")})
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def bundle_dir(tmp_path):
    (tmp_path / "fake").mkdir()
    (tmp_path / "fake" / "voice.json").write_text("{}")
    return tmp_path


def test_serve_starts_uvicorn_on_the_factory(isolated_env, bundle_dir, monkeypatch):
    import uvicorn

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda target, **kw: calls.append((target, kw)))
    result = runner.invoke(
        app, ["serve", "--voices-dir", str(bundle_dir), "--port", "9123", "--workers", "2", "--device", "cpu"]
    )
    assert result.exit_code == 0, result.output
    ((target, kw),) = calls
    assert target == "service.app:create_app" and kw["factory"] is True
    assert (kw["host"], kw["port"], kw["workers"]) == ("127.0.0.1", 9123, 2)
    assert "service" in kw["log_config"]["loggers"]
    settings = get_settings()  # what each worker's create_app() will read
    assert (settings.voices_dir, settings.port, settings.device) == (bundle_dir, 9123, "cpu")


def test_serve_without_voice_bundle(isolated_env, tmp_path):
    result = runner.invoke(app, ["serve", "--voices-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "no voice bundle" in result.output


def test_serve_rejects_a_bad_setting(isolated_env, bundle_dir):
    result = runner.invoke(app, ["serve", "--voices-dir", str(bundle_dir), "--device", "tpu"])
    assert result.exit_code == 2
    assert "invalid setting device" in result.output
    assert "Traceback" not in result.output


def test_serve_refuses_missing_cuda_when_required(isolated_env, bundle_dir):
    ort = pytest.importorskip("onnxruntime")
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has CUDA")
    result = runner.invoke(
        app, ["serve", "--voices-dir", str(bundle_dir), "--device", "cuda", "--require-cuda"]
    )
    assert result.exit_code == 2
    assert "CUDA required" in result.output


def test_service_app_imports_without_torch():
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'torch' or name.startswith('torch.'):\n"
        "            raise ImportError('torch blocked')\n"
        "sys.meta_path.insert(0, Block())\n"
        "import service.app, service.routers.speech, service.audio, service.scheduler\n"
        "service.app.create_app()\n"
        "assert 'torch' not in sys.modules\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
