"""The root ``parawave`` command: every group answers --help, and the runtime stays torch-free."""

import pytest
from typer.testing import CliRunner

from service import cli
from service.cli import LAZY_COMMANDS, app

runner = CliRunner()


def test_root_help_lists_every_group():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0, result.output
    for name in LAZY_COMMANDS:
        assert name in result.output


@pytest.mark.parametrize("name", sorted(LAZY_COMMANDS))
def test_group_help(name):
    """Each group imports in the dev install (every extra is there) and its own --help answers; the
    stand-in for a group that cannot be imported answers --help too, so that is ruled out first."""
    group = cli._load(name)
    assert getattr(group, "unavailable_reason", None) is None, group.unavailable_reason
    result = runner.invoke(app, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output and "not available" not in result.output


def test_a_group_that_cannot_be_imported_says_so(monkeypatch):
    monkeypatch.setitem(LAZY_COMMANDS, "ghost", ("service.no_such_module:app", "A group that is gone."))
    assert "service.no_such_module" in cli._load("ghost").unavailable_reason
    result = runner.invoke(app, ["ghost", "anything"])
    assert result.exit_code == 2
    assert "'parawave ghost' is not available in this install" in result.output


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
