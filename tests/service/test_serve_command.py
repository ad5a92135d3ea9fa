"""``parawave serve``: settings from options, clear one-line errors, uvicorn started on the app factory."""

from __future__ import annotations

import os
import socket

import pytest
from fake_engine import FakeEngine
from fastapi import FastAPI
from typer.testing import CliRunner

from service import state
from service.cli import app
from service.settings import get_settings
from service.types import EngineLoadError

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


@pytest.fixture
def uvicorn_calls(monkeypatch):
    import uvicorn

    calls: list[tuple[object, dict]] = []
    monkeypatch.setattr(uvicorn, "run", lambda target, **kw: calls.append((target, kw)))
    return calls


def test_serve_one_worker_serves_the_engine_it_loaded(isolated_env, bundle_dir, monkeypatch, uvicorn_calls):
    engine = FakeEngine()
    seen = []
    monkeypatch.setattr(state, "default_engine_loader", lambda s: seen.append(s) or engine)
    result = runner.invoke(
        app, ["serve", "--voices-dir", str(bundle_dir), "--port", "9123", "--device", "cpu"]
    )
    assert result.exit_code == 0, result.output
    ((target, kw),) = uvicorn_calls
    assert isinstance(target, FastAPI) and target.state.parawave.engine is engine
    assert kw["factory"] is False
    assert (kw["host"], kw["port"], kw["workers"]) == ("127.0.0.1", 9123, 1)
    assert "service" in kw["log_config"]["loggers"]
    assert (seen[0].voices_dir, seen[0].port, seen[0].device) == (bundle_dir, 9123, "cpu")
    # in-flight requests (a reference generation included) get to finish after SIGTERM
    assert kw["timeout_graceful_shutdown"] == seen[0].reference_timeout_s + 5


def test_serve_shutdown_grace_from_the_settings(isolated_env, bundle_dir, monkeypatch, uvicorn_calls):
    monkeypatch.setattr(state, "default_engine_loader", lambda s: FakeEngine())
    os.environ["PARAWAVE_REFERENCE_TIMEOUT_S"] = "40"
    assert runner.invoke(app, ["serve", "--voices-dir", str(bundle_dir)]).exit_code == 0
    os.environ["PARAWAVE_SHUTDOWN_GRACE_S"] = "7.5"
    get_settings.cache_clear()
    assert runner.invoke(app, ["serve", "--voices-dir", str(bundle_dir)]).exit_code == 0
    assert [kw["timeout_graceful_shutdown"] for _, kw in uvicorn_calls] == [45.0, 7.5]


def test_serve_several_workers_use_the_factory(isolated_env, bundle_dir, monkeypatch, uvicorn_calls):
    monkeypatch.setattr(state, "default_engine_loader", lambda s: FakeEngine())
    result = runner.invoke(
        app, ["serve", "--voices-dir", str(bundle_dir), "--workers", "2", "--port", "9124"]
    )
    assert result.exit_code == 0, result.output
    ((target, kw),) = uvicorn_calls
    assert target == "service.app:create_app" and kw["factory"] is True and kw["workers"] == 2
    settings = get_settings()  # what each worker's create_app() reads from the environment
    assert (settings.voices_dir, settings.port, settings.workers) == (bundle_dir, 9124, 2)


def test_serve_engine_load_error_is_one_line(isolated_env, bundle_dir, monkeypatch, uvicorn_calls):
    def broken(settings):
        raise EngineLoadError("voice.json: format version 9 is not supported")

    monkeypatch.setattr(state, "default_engine_loader", broken)
    result = runner.invoke(app, ["serve", "--voices-dir", str(bundle_dir)])
    assert result.exit_code == 2
    assert "format version 9" in result.output and "Traceback" not in result.output
    assert not uvicorn_calls


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


def test_service_app_imports_without_torch(python_without):
    code = (
        "import service.app, service.routers.speech, service.audio, service.scheduler\n"
        "service.app.create_app()\n"
        "assert 'torch' not in sys.modules\n"
        "print('ok')\n"
    )
    out = python_without(code, blocked=("torch",))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_serve_wyoming_option_reaches_the_app(isolated_env, bundle_dir, monkeypatch, uvicorn_calls):
    monkeypatch.setattr(state, "default_engine_loader", lambda s: FakeEngine())
    with socket.socket() as s:  # a free port (closed again: serve checks it can listen there)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    uri = f"tcp://127.0.0.1:{port}"
    result = runner.invoke(app, ["serve", "--voices-dir", str(bundle_dir), "--wyoming", uri])
    assert result.exit_code == 0, result.output
    ((target, _),) = uvicorn_calls
    assert target.state.parawave.settings.wyoming_uri == uri
    assert f"Wyoming (Home Assistant) on {uri}" in result.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["--wyoming", "http://0.0.0.0:10200"], "invalid setting wyoming_uri"),
        (["--wyoming", "tcp://127.0.0.1:10200", "--workers", "2"], "use --workers 1"),
        (["--wyoming", "tcp://127.0.0.1:{busy}"], "cannot listen for Wyoming on tcp://127.0.0.1:"),
    ],
)
def test_serve_wyoming_errors_are_one_line(
    isolated_env, bundle_dir, monkeypatch, uvicorn_calls, args, message
):
    monkeypatch.setattr(state, "default_engine_loader", lambda s: FakeEngine())
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        args = [a.format(busy=busy.getsockname()[1]) for a in args]
        result = runner.invoke(app, ["serve", "--voices-dir", str(bundle_dir), *args])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not uvicorn_calls
