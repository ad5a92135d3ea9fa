"""``bench.teacher_batch``: a batched teacher_block call is the batch-1 calls side by side (the
property that would make one step loop for several reference requests legitimate), and the bench's
command line fails cleanly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench import teacher_batch as bench
from service.sessions import CPU, Graph
from service.voice import Voice

TINY = Path(__file__).resolve().parents[1] / "fixtures" / "voices" / "tiny"


@pytest.fixture(scope="module")
def graphs():
    voice = Voice.load(TINY)
    served = voice.teacher_block  # what the engine runs: static batch 1
    dynamic = Graph("teacher_block", served.path, [CPU], 1)
    return dynamic, served, voice.hop


def test_batched_rows_equal_the_served_batch_one_calls(graphs):
    dynamic, served, hop = graphs
    feeds = bench.block_feeds(dynamic, 3, 2, hop, seed=1)
    batched = dynamic.run(*feeds)  # audio (3, n), x_last (3, 1), states (3, c, k)
    for b in range(3):
        alone = served.run(*bench.rows_of(feeds, b))
        for got, want in zip(batched, alone, strict=True):
            np.testing.assert_allclose(got[b : b + 1], want, rtol=1e-5, atol=1e-6)
    # negative check: the comparison tells rows apart (another row's inputs give other audio)
    other = served.run(*bench.rows_of(feeds, 1))[0]
    assert np.abs(batched[0][0:1] - other).max() > 1e-3


def test_the_feeds_follow_the_graph_spec(graphs):
    dynamic, _, hop = graphs
    feeds = bench.block_feeds(dynamic, 2, 3, hop, seed=0)
    assert len(feeds) == len(dynamic.spec.input_names)
    named = dict(zip(dynamic.spec.input_names, feeds, strict=True))
    assert named["cond"].shape[::2] == (2, 3 + 2)
    assert named["noise"].shape == (2, 3 * hop)
    assert named["excitation"].shape == (2, 3, 3 * hop)
    assert all(f.dtype == np.float32 and f.shape[0] == 2 for f in feeds)


def test_run_prints_a_row_per_batch_and_way(graphs):
    lines = bench.run(TINY, [1, 2], frames=2, repeats=1, seed=0)
    rows = [line.split() for line in lines[2:]]
    assert [(r[0], r[1]) for r in rows] == [
        ("1", "batched"),
        ("1", "parallel"),
        ("2", "batched"),
        ("2", "parallel"),
    ]
    for r in rows:  # total = B x per request
        total, per = float(r[2].replace(",", "")), float(r[3].replace(",", ""))
        assert total > 0 and total == pytest.approx(int(r[0]) * per, rel=0.01, abs=1)


def test_bad_arguments_and_bundles_exit_with_a_message(tmp_path):
    with pytest.raises(SystemExit, match="comma-separated integers"):
        bench.main(["--voice", str(TINY), "--batches", "1,x"])
    with pytest.raises(SystemExit, match="must be positive"):
        bench.main(["--voice", str(TINY), "--batches", "0"])
    with pytest.raises(SystemExit, match=r"no voice\.json"):
        bench.main(["--voice", str(tmp_path)])
