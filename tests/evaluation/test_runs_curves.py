"""evaluation.runs_curves: several runs' TensorBoard scalars -> curves.csv (with CPU minutes), a PNG
and a table of last values."""

from pathlib import Path

import pytest

from evaluation.runs_curves import cpu_minutes_at, main


def _run(root: Path, name: str, stft: list[float], with_cpu: bool = True) -> Path:
    from torch.utils.tensorboard import SummaryWriter

    run = root / name
    w = SummaryWriter(str(run / "tb"))
    for i, v in enumerate(stft, start=1):
        w.add_scalar("val/stft", v, 10 * i)
        if with_cpu:
            w.add_scalar("train/cpu_seconds", 30.0 * i, 10 * i)
    w.close()
    return run


def test_curves_csv_png_and_last_values(tmp_path, capsys):
    a = _run(tmp_path, "a", [1.0, 0.9, 0.8])
    b = _run(tmp_path, "b", [1.1, 0.7])
    main([str(a), str(b), "--out", str(tmp_path / "out"), "--tags", "val/stft,val/kl"])
    rows = (tmp_path / "out" / "curves.csv").read_text().splitlines()
    assert rows[0] == "run,tag,step,cpu_minutes,value"
    assert "a,val/stft,30,1.50,0.8" in rows and "b,val/stft,20,1.00,0.7" in rows and len(rows) == 6
    assert (tmp_path / "out" / "curves.png").stat().st_size > 1000
    table = capsys.readouterr().out
    assert "| a | 0.8000 |" in table and "| b | 0.7000 |" in table and "val/kl" not in table


def test_cpu_minutes_at_nearest_logged_step():
    cpu = [(25, 60.0), (50, 120.0)]
    assert cpu_minutes_at(cpu, 10) == 1.0
    assert cpu_minutes_at(cpu, 25) == 1.0
    assert cpu_minutes_at(cpu, 40) == 2.0
    assert cpu_minutes_at(cpu, 99) == pytest.approx(2.0)
    assert cpu_minutes_at([], 5) is None
