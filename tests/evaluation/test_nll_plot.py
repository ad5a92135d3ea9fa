"""``python -m evaluation.nll_plot``: runs compared at equal samples seen, a plot written."""

import pytest

from evaluation import nll_plot


def write(path, rows):
    path.write_text(
        "step\tsamples_seen\tval_nll\tlogged_at\n"
        + "".join(f"{s // 100}\t{s}\t{v}\t2026-12-08 00:00:00\n" for s, v in rows)
    )
    return path


def test_runs_compare_at_the_nearest_samples_seen_at_or_below(tmp_path, capsys):
    a = write(tmp_path / "a.tsv", [(1000, -1.0), (2000, -2.0), (3000, -3.0)])
    b = write(tmp_path / "b.tsv", [(1500, -1.5), (3000, -3.5), (500, -0.5)])  # out of order on purpose
    out = tmp_path / "plot.png"
    nll_plot.main([f"base={a}", f"lp={b}", "--out", str(out)])
    table = capsys.readouterr().out.splitlines()
    assert table[0] == "| samples seen | base | lp |"
    assert table[2:] == ["| 0M | -1.000 | -0.500 |", "| 0M | -2.000 | -1.500 |", "| 0M | -3.000 | -3.500 |"]
    assert out.stat().st_size > 1000 and out.read_bytes()[:4] == b"\x89PNG"


def test_before_a_runs_first_row_there_is_no_value():
    assert nll_plot.at_or_below([(100, -1.0)], 99) is None
    assert nll_plot.at_or_below([(100, -1.0), (200, -2.0)], 199) == -1.0


@pytest.mark.parametrize("bad", ["nolabel.tsv", "=x.tsv", "lp="])
def test_a_run_without_label_is_a_usage_error(bad):
    with pytest.raises(SystemExit) as exc:
        nll_plot.main([bad, "--out", "x.png"])
    assert exc.value.code == 2
