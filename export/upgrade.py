"""Upgrade a format 2 voice bundle (speaker ids) to format 3 (speaker weights) without its checkpoints.

Format 3 graphs take ``speaker_weights`` (B, S) float instead of ``speaker`` (B,) int64, so that a
request can mix a bundle's speakers (``service.graphs``). A bundle exported with this parawave has
them; an older one is re-exported from its checkpoints (``parawave export voice``), or, where the
checkpoints are gone, upgraded here: in each graph the speaker id's only uses, an optional
``Reshape`` to (-1) and a ``Gather`` from the speaker embedding table (an initializer (S, D)), become
``MatMul(speaker_weights, table)``: the same table, so a one-hot row gives exactly the id's row and
the upgraded graph speaks exactly as before (checked on random inputs before anything is written).
Any other use of the speaker id is refused. ``teacher_block`` takes no speaker and is kept as is.

    parawave export upgrade voices/flite [--out DIR]
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from service import bundle as bundle_io
from service import graphs

SPEAKER_ROLES = ("acoustic", "student", "teacher_cond", "acoustic_fp16", "student_fp16")


class UpgradeError(RuntimeError):
    """The bundle cannot be upgraded (one line)."""


def upgrade_graph(model: onnx.ModelProto, n_speakers: int, role: str) -> onnx.ModelProto:
    """A copy of a format 2 graph with ``speaker`` (B,) int64 replaced by ``speaker_weights`` (B, S)."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    g = model.graph
    names = [i.name for i in g.input]
    if graphs.LEGACY_SPEAKER not in names:
        raise UpgradeError(f"{role}: no '{graphs.LEGACY_SPEAKER}' input (already format 3?)")
    inits = {t.name: t for t in g.initializer}
    ids = {graphs.LEGACY_SPEAKER}  # values that carry the speaker ids (B,)
    for n in g.node:
        uses = [i for i in n.input if i in ids]
        if not uses:
            continue
        if n.op_type == "Reshape" and n.input[0] in ids:
            shape = inits.get(n.input[1])
            target = None if shape is None else onnx.numpy_helper.to_array(shape).tolist()
            if target != [-1]:
                # a shape computed in the graph (a Constant node): accept only [-1]
                const = next((c for c in g.node if c.output and c.output[0] == n.input[1]), None)
                value = None
                if const is not None and const.op_type == "Constant":
                    value = onnx.numpy_helper.to_array(const.attribute[0].t).tolist()
                if value != [-1]:
                    raise UpgradeError(f"{role}: the speaker id is reshaped to {target or value}, not (-1)")
            n.op_type, n.input[:] = "Identity", [n.input[0]]  # weights (B, S) pass through
            del n.attribute[:]
            ids.add(n.output[0])
        elif n.op_type == "Gather" and n.input[1] in ids and n.input[0] in inits:
            table = inits[n.input[0]]
            axis = next((a.i for a in n.attribute if a.name == "axis"), 0)
            if axis != 0 or len(table.dims) != 2 or table.dims[0] != n_speakers:
                raise UpgradeError(
                    f"{role}: the speaker table {n.input[0]} has shape {list(table.dims)}, expected ({n_speakers}, D)"
                )
            n.op_type = "MatMul"
            n.input[:] = [n.input[1], n.input[0]]  # (B, S) @ (S, D)
            del n.attribute[:]
        else:
            raise UpgradeError(f"{role}: the speaker id feeds a {n.op_type} node; cannot upgrade")
    # the weights replace the ids: rename every use, and the input
    for n in g.node:
        n.input[:] = [graphs.SPEAKER_WEIGHTS if i == graphs.LEGACY_SPEAKER else i for i in n.input]
    used = any(graphs.SPEAKER_WEIGHTS in n.input for n in g.node)
    dims: list = ["batch", n_speakers if used else None]
    new_inputs = []
    for i in g.input:
        if i.name == graphs.LEGACY_SPEAKER:
            new_inputs.append(helper.make_tensor_value_info(graphs.SPEAKER_WEIGHTS, TensorProto.FLOAT, dims))
        else:
            new_inputs.append(i)
    del g.input[:]
    g.input.extend(new_inputs)
    used_names = {i for n in g.node for i in n.input}
    kept = [t for t in g.initializer if t.name in used_names]  # the reshape's shape is gone
    del g.initializer[:]
    g.initializer.extend(kept)
    onnx.checker.check_model(model)
    return model


def _feeds(role: str, session, n_speakers: int, hop: int, n_symbols: int) -> dict[str, np.ndarray]:
    """Random inputs of a format 2 graph: every speaker once (B = S), a few phonemes or frames."""
    rng = np.random.default_rng(0)
    B, frames = n_speakers, 6
    feeds: dict[str, np.ndarray] = {graphs.LEGACY_SPEAKER: np.arange(B, dtype=np.int64)}
    if graphs.base_role(role) == "acoustic":
        feeds["phonemes"] = rng.integers(1, max(2, n_symbols), (B, 9)).astype(np.int64)  # (B, L)
        feeds["lengths"] = np.full(B, 9, np.int64)
        feeds["speed"] = np.ones(B, np.float32)
        feeds["pitch"] = np.zeros(B, np.float32)
        return feeds
    n_mels = int(next(i.shape[1] for i in session.get_inputs() if i.name == "mel"))
    feeds["mel"] = (rng.standard_normal((B, n_mels, frames)) * 2 - 5).astype(np.float32)  # (B, n_mels, F)
    if graphs.base_role(role) == "student":
        feeds["z"] = rng.standard_normal((B, frames * hop)).astype(np.float32)  # (B, T)
        feeds["excitation"] = rng.uniform(-1, 1, (B, 3, frames * hop)).astype(np.float32)  # (B, 3, T)
    return feeds


def check_upgrade(
    old: onnx.ModelProto, new: onnx.ModelProto, n_speakers: int, role: str, hop: int, n_symbols: int
) -> float:
    """Max abs difference of the two graphs on random inputs, every speaker (one-hot weights vs ids)."""
    import onnxruntime as ort

    from service.sessions import session_options

    so = session_options(None)  # None: ONNX Runtime's choice of threads
    a = ort.InferenceSession(old.SerializeToString(), so, providers=["CPUExecutionProvider"])
    b = ort.InferenceSession(new.SerializeToString(), so, providers=["CPUExecutionProvider"])
    feeds = _feeds(role, a, n_speakers, hop, n_symbols)
    feeds = {i.name: feeds[i.name] for i in a.get_inputs()}
    got_a = a.run(None, feeds)
    feeds_b = {k: v for k, v in feeds.items() if k != graphs.LEGACY_SPEAKER}
    feeds_b[graphs.SPEAKER_WEIGHTS] = np.eye(n_speakers, dtype=np.float32)  # (B, S) one-hot
    got_b = b.run(None, feeds_b)
    worst = 0.0
    for x, y in zip(got_a, got_b, strict=True):
        if x.shape != y.shape:
            raise UpgradeError(f"{role}: the upgraded graph's output shape {y.shape} differs from {x.shape}")
        worst = max(worst, float(np.abs(x.astype(np.float64) - y.astype(np.float64)).max(initial=0.0)))
    return worst


def upgrade_bundle(
    folder: Path, out: Path | None = None, tolerance: float = 1e-5
) -> tuple[Path, dict[str, float]]:
    """Upgrade ``folder`` (format 2) into ``out`` (default: in place). Returns the folder and, per
    upgraded graph, the max abs difference from the original on random inputs (one-hot vs ids)."""
    try:
        manifest = bundle_io.load(folder)
    except Exception as exc:  # EngineLoadError: one line already
        raise UpgradeError(str(exc)) from None
    if manifest.format_version != 2:
        raise UpgradeError(f"{folder}: format {manifest.format_version}, not 2: nothing to upgrade")
    S = len(manifest.speakers)
    hop = manifest.audio.hop_length
    n_symbols = len(manifest.symbols.get("symbols", ())) or 2
    upgraded: dict[str, onnx.ModelProto] = {}
    diffs: dict[str, float] = {}
    for role, f in manifest.files.items():
        if role not in SPEAKER_ROLES:
            continue
        old = onnx.load(folder / f.path)
        new = upgrade_graph(old, S, role)
        diff = check_upgrade(old, new, S, role, hop, n_symbols)
        if diff > tolerance:
            raise UpgradeError(
                f"{role}: the upgraded graph differs from the original by {diff:.3g} (> {tolerance:g})"
            )
        upgraded[role], diffs[role] = new, diff
    target = Path(out) / manifest.name if out is not None else Path(folder)
    if target != Path(folder):
        if target.exists():
            raise UpgradeError(f"{target} exists")
        shutil.copytree(folder, target)
    files = dict(manifest.files)
    for role, model in upgraded.items():
        path = target / manifest.files[role].path
        path.write_bytes(model.SerializeToString())
        files[role] = bundle_io.file_entry(target, manifest.files[role].path, manifest.files[role].precision)
    replace(manifest, files=files, format_version=bundle_io.FORMAT_VERSION).save(target)
    return target, diffs
