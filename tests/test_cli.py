"""The root ``parawave`` command: every group answers --help, and the runtime stays torch-free."""

import pytest
from typer.testing import CliRunner

from service.cli import LAZY_COMMANDS, app

runner = CliRunner()


def test_root_help_lists_every_group():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0, result.output
    for name in LAZY_COMMANDS:
        assert name in result.output


@pytest.mark.parametrize("name", sorted(LAZY_COMMANDS))
def test_group_help(name):
    result = runner.invoke(app, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_serve_without_voice_says_so(tmp_path):
    result = runner.invoke(app, ["serve", "--voices-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "no voice bundle" in result.output


def test_runtime_imports_without_torch(python_without):
    # Make torch unimportable, then import the runtime packages and the CLI root.
    code = (
        "import service, service.cli, service.commands, model.text\n"
        "assert 'torch' not in sys.modules\n"
        "print('ok')\n"
    )
    out = python_without(code, blocked=("torch",))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
