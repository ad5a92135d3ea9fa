"""``parawave text`` through the root CLI."""

from typer.testing import CliRunner

from service.cli import app

runner = CliRunner()


def _lines(output: str) -> dict[str, str]:
    out = {}
    for line in output.splitlines():
        label, sep, value = line.partition(":")
        if sep:
            out[label.strip()] = value.strip()
    return out


def test_words_and_phonemes():
    result = runner.invoke(app, ["text", "Dr. Smith paid $19.99 at 3 PM."])
    assert result.exit_code == 0, result.output
    lines = _lines(result.output)
    assert lines["words"] == "Doctor Smith paid nineteen dollars and ninety-nine cents at three PM."
    assert lines["phonemes"].startswith("dˈɑːktɚ smˈɪθ")
    assert lines["phonemes"].endswith(".")
    assert "ids" not in lines


def test_ids_option():
    result = runner.invoke(app, ["text", "Hello there.", "--ids"])
    assert result.exit_code == 0, result.output
    ids = [int(x) for x in _lines(result.output)["ids"].split()]
    assert ids and all(i > 1 for i in ids)


def test_file_option(tmp_path):
    f = tmp_path / "lines.txt"
    f.write_text("LJ001-0001|Dr. Who arrived.|Doctor Who arrived.\n\nplain line 2\n", encoding="utf-8")
    result = runner.invoke(app, ["text", "--file", str(f)])
    assert result.exit_code == 0, result.output
    out = result.output.splitlines()
    assert "id:        LJ001-0001" in out
    assert "words:     Doctor Who arrived." in out
    assert "words:     plain line two" in out
    assert sum(line.startswith("phonemes:") for line in out) == 2


def test_empty_input_is_a_user_error():
    for args in (["text", ""], ["text", "   "], ["text"], ["text", "😀"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        assert "error:" in result.output
        assert "Traceback" not in result.output


def test_bad_file_and_conflicting_inputs(tmp_path):
    result = runner.invoke(app, ["text", "--file", str(tmp_path / "missing.txt")])
    assert result.exit_code == 2 and "cannot read" in result.output
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n", encoding="utf-8")
    result = runner.invoke(app, ["text", "--file", str(empty)])
    assert result.exit_code == 2 and "no text" in result.output
    result = runner.invoke(app, ["text", "hi", "--file", str(empty)])
    assert result.exit_code == 2 and "not both" in result.output
