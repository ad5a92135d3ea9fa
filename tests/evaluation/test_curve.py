"""The teacher's learning-curve record: parsing the trainer's log, the samples-seen arithmetic, and
the CLI's one-line errors (the AR-sample row runs in the campaign, not here: it needs a trained
teacher to say anything)."""

import json

from evaluation import curve

LOG = """\
2026-12-02 09:14:20,075 INFO model.train.loop: training teacher (0.860M parameters) on cpu
2026-12-02 09:22:38,829 INFO model.train.loop: step 500: val loss -1.7648
2026-12-02 09:22:38,869 INFO model.train.loop: saved runs/t/checkpoints/best.pt (step 500)
2026-12-02 09:30:07,000 INFO model.train.loop: step 1000: val loss -2.2758
2026-12-02 13:09:06,475 INFO model.train.loop: training teacher (0.860M parameters) on cpu, steps 500 -> 60000
2026-12-02 13:17:00,000 INFO model.train.loop: step 1000: val loss -2.3001
2026-12-02 13:25:00,000 INFO model.train.loop: step 1500: val loss 1.5e-3
"""


def _run(tmp_path, log=LOG):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(
        json.dumps({"train": {"batch_size": 4, "segment_frames": 40}, "audio": {"hop_length": 200}})
    )
    (run / "train.log").write_text(log)
    return run


def test_val_rows_one_per_step_the_resumed_run_wins(tmp_path):
    rows = curve.val_rows(LOG, per_step=32000)
    assert [r["step"] for r in rows] == ["500", "1000", "1500"]
    assert rows[1]["val_nll"] == "-2.3001"  # logged again after the resume: the later line
    assert rows[2]["val_nll"] == "1.5e-3"
    assert rows[0]["samples_seen"] == str(500 * 32000)
    assert rows[0]["logged_at"] == "2026-12-02 09:22:38"


def test_samples_per_step_from_config(tmp_path):
    assert curve.samples_per_step(_run(tmp_path)) == 4 * 40 * 200


def test_cli_writes_nll_tsv(tmp_path):
    run = _run(tmp_path)
    out = tmp_path / "curve"
    assert curve.main(["--run", str(run), "--out", str(out)]) == 0
    lines = (out / "nll.tsv").read_text().splitlines()
    assert lines[0].split("\t") == list(curve.NLL_FIELDS)
    assert len(lines) == 4 and lines[-1].startswith("1500\t48000000\t")


def test_cli_keeps_the_rows_of_runs_whose_logs_are_gone(tmp_path):
    """A fresh checkout has only this session's train.log: the committed rows must survive, and a step
    in both keeps the log's value."""
    out = tmp_path / "curve"
    out.mkdir()
    curve.write_tsv(
        out / "nll.tsv",
        curve.NLL_FIELDS,
        [
            {"step": "100", "samples_seen": "3200000", "val_nll": "-0.5", "logged_at": "2026-12-01 08:00:00"},
            {
                "step": "1500",
                "samples_seen": "48000000",
                "val_nll": "9.9",
                "logged_at": "2026-12-01 09:00:00",
            },
        ],
    )
    assert curve.main(["--run", str(_run(tmp_path)), "--out", str(out)]) == 0
    rows = curve.read_tsv(out / "nll.tsv")
    assert [r["step"] for r in rows] == ["100", "500", "1000", "1500"]
    assert rows[0]["val_nll"] == "-0.5" and rows[-1]["val_nll"] == "1.5e-3"


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert curve.main(["--run", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().out.startswith("error: ")
    run = _run(tmp_path)
    assert curve.main(["--run", str(run), "--out", str(tmp_path / "o"), "--sample"]) == 2
    assert "--sample needs --acoustic, --data" in capsys.readouterr().out
    assert curve.main(["--run", str(run), "--out", str(tmp_path / "o"), "--temperatures", "0.4"]) == 2
    assert "--temperatures needs --acoustic, --data" in capsys.readouterr().out
    assert curve.main(["--run", str(run), "--out", str(tmp_path / "o"), "--temperatures", "x,1"]) == 2
    assert "expected comma-separated numbers" in capsys.readouterr().out
    assert curve.main(["--run", str(run), "--out", str(tmp_path / "o"), "--temperatures", "0"]) == 2
    assert "must be > 0" in capsys.readouterr().out
    (run / "config.json").write_text("{}")
    assert curve.main(["--run", str(run), "--out", str(tmp_path / "o")]) == 2
