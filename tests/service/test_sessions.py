"""One definition of the ONNX Runtime session options (service.sessions.session_options): the
engine's sessions and the export parity checks' are built with it."""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort

from export import parity
from service.sessions import CPU, Graph, session_options

TINY = Path(__file__).resolve().parents[1] / "fixtures" / "voices" / "tiny"


def _options(sess: ort.InferenceSession) -> tuple:
    so = sess.get_session_options()
    return (
        so.intra_op_num_threads,
        so.inter_op_num_threads,
        so.execution_mode,
        so.graph_optimization_level,
        so.log_severity_level,
        so.get_session_config_entry("session.intra_op.allow_spinning"),
    )


def test_session_options():
    so = session_options(3, spin=True)
    assert so.intra_op_num_threads == 3 and so.inter_op_num_threads == 1
    assert so.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert so.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL
    assert so.get_session_config_entry("session.intra_op.allow_spinning") == "1"
    quiet = session_options(None)
    assert quiet.intra_op_num_threads == 0  # ONNX Runtime's choice
    assert quiet.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_the_engine_and_the_parity_checks_open_sessions_alike():
    path = TINY / "acoustic.onnx"
    engine = Graph("acoustic", path, [CPU], 1).session
    checks = parity.session(path)
    expected = _options(ort.InferenceSession(str(path), session_options(1), providers=[CPU]))
    assert _options(engine) == _options(checks) == expected
    assert expected[-1] == "0"  # idle threads do not spin (set only by session_options)
