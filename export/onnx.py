"""PyTorch -> ONNX: the acoustic model, the Parallel WaveNet student and the WaveNet teacher.

Every graph is exported through a small wrapper module whose ``forward`` calls the model's own
inference code path (``AcousticModel.generate``, the student's forward, ``TeacherWaveNet.step`` /
``frame_conditioning``); nothing is patched. The wrappers ask the WaveNet models for their
reference layout (``model.wavenet.Layout.REFERENCE``: Conv nodes, which ONNX Runtime runs fast).
Names, dtypes and dynamic axes come from :mod:`service.graphs` (the runtime checks sessions against
the same specs); the opset is ``service.graphs.OPSET``. Weight normalisation is folded into plain
weights first (:func:`prepare`). Exports use the TorchScript-based exporter (``dynamo=False``): it
needs nothing beyond torch and onnx, which is all the GPU host has.

The teacher. Autoregressive generation needs one network evaluation per sample, 16,000 per second
of audio. A *step graph* (one sample per ``InferenceSession.run``, caches as explicit inputs and
outputs) is exported and parity-checked, but the engine does not drive it sample by sample from
Python: :func:`export.teacher_block.teacher_block_model` wraps the step graph as the body of an
ONNX ``Scan`` over the samples of a run of frames, after an in-graph 3-tap upsampling of those
frames' conditioning.
One call then generates ``N * hop`` samples; the caches still cross the Python boundary, but once
per call instead of once per sample. ``python -m bench.teacher_onnx`` measures the per-sample
cost of both; the numbers are in the module docstring there.

fp16 variants (for the CUDA provider): the same wrapper with the model in half precision and casts
at the edges, so the graph's interface stays float32 (see :class:`Fp16`).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import io
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import Tensor, nn

from export.teacher_block import teacher_block_model
from model.wavenet import Layout, remove_weight_norm
from service import graphs
from service.graphs import GraphSpec

log = logging.getLogger(__name__)

TEACHER_UNROLL = 1  # samples per Scan iteration of the teacher_block graph (measured, see module doc)


def prepare(model: nn.Module) -> nn.Module:
    """A copy in eval mode, on the CPU, fp32, weight normalisation folded into plain weights.

    The caller's model is left untouched. (A weight-normalised model is rebuilt from its config
    without weight norm and given the computed weights: removing the parametrization from a deep
    copy would also strip it from the original, whose generated class the copy shares.)
    """
    cfg = getattr(model, "cfg", None)
    if getattr(cfg, "weight_norm", False):
        fresh = type(model)(dataclasses.replace(cfg, weight_norm=False))
        state = {}
        for name in fresh.state_dict():
            owner, _, attr = name.rpartition(".")
            src = model.get_submodule(owner) if owner else model
            state[name] = getattr(src, attr).detach().clone()
        fresh.load_state_dict(state)
        model = fresh
    else:
        model = copy.deepcopy(model)
        remove_weight_norm(model)
    return model.cpu().float().eval()


# ------------------------------------------------------------------------------------- wrappers


class AcousticGraph(nn.Module):
    """phonemes (B, L), lengths (B,), speaker_weights (B, S), speed (B,), pitch (B,) -> mel (B, n_mels, F),
    durations, frames, f0 (B, F). A model without pitch gives f0 = 0 (unvoiced) and ignores ``pitch``
    (kept as an input: every acoustic graph has the same interface)."""

    def __init__(self, acoustic: nn.Module):
        super().__init__()
        self.acoustic = acoustic

    def forward(self, phonemes: Tensor, lengths: Tensor, speaker: Tensor, speed: Tensor, pitch: Tensor):
        # speed per row: (B, 1) broadcasts over phonemes in the duration rounding
        mel, durations, frames, f0 = self.acoustic.generate(phonemes, lengths, speaker, speed[:, None], pitch)
        return mel, durations, frames, f0


class StudentGraph(nn.Module):
    """z (B, T), mel (B, n_mels, F), speaker_weights (B, S), excitation (B, 3, T) -> audio (B, T) (T = F * hop).
    A mel-only student ignores the excitation (kept as an input: one interface)."""

    def __init__(self, student: nn.Module):
        super().__init__()
        self.student = student

    def forward(self, z: Tensor, mel: Tensor, speaker: Tensor, excitation: Tensor) -> Tensor:
        out = self.student(z, mel, speaker, excitation=excitation, layout=Layout.REFERENCE)
        audio = out[0] if isinstance(out, tuple | list) else out
        return audio


def is_lp(teacher: nn.Module) -> bool:
    """Whether a teacher has linear prediction in its mean (issue 38): its graphs take the LP form of
    the contract (``service.graphs``: ``lpc`` out of ``teacher_cond``, into step and block)."""
    return bool(getattr(teacher.cfg, "lpc_order", 0))


class TeacherCondGraph(nn.Module):
    """mel (B, n_mels, F), speaker_weights (B, S) -> every layer's gate conditioning at frame rate
    (B, C, F); an LP teacher also its per-frame LPC coefficients lpc (B, p, F) (``frame_lpc``)."""

    def __init__(self, teacher: nn.Module):
        super().__init__()
        self.teacher = teacher

    def forward(self, mel: Tensor, speaker: Tensor):
        cond = self.teacher.frame_conditioning(mel, speaker, Layout.REFERENCE)  # (B, C, F)
        if is_lp(self.teacher):
            return cond, self.teacher.frame_lpc(mel)  # (B, C, F), (B, p, F)
        return cond


class TeacherStepGraph(nn.Module):
    """One sample of ancestral sampling: ``TeacherWaveNet.step`` then ``clamp(mean + exp(log_scale) *
    noise, -1, 1)`` (the sampling of ``TeacherWaveNet.generate``; noise = temperature * N(0, 1), 0 =
    greedy). x_prev (B, 1), cond_t (B, C), exc_t (B, 3), [lpc_t (B, p): an LP teacher], noise (B,),
    *state -> sample, mean, log_scale (B,), *state (an LP teacher's last state is its history).
    A mel-only teacher ignores exc_t (kept as an input: one interface)."""

    def __init__(self, teacher: nn.Module):
        super().__init__()
        self.teacher = teacher

    def forward(self, x_prev: Tensor, cond_t: Tensor, exc_t: Tensor, *rest: Tensor):
        lpc_t = None
        if is_lp(self.teacher):
            lpc_t, *rest = rest
        noise, *state = rest
        mean, log_scale, new_state = self.teacher.step(x_prev, cond_t, list(state), exc_t, lpc_t)
        sample = torch.clamp(mean + torch.exp(log_scale) * noise, -1.0, 1.0)  # (B,)
        return (sample, mean, log_scale, *new_state)


# ------------------------------------------------------------------------------------- export


@contextlib.contextmanager
def _quiet_exporter():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # legacy-exporter deprecation, tracer warnings on shape math
        yield


def export_graph(module: nn.Module, args: Sequence[Tensor], spec: GraphSpec) -> onnx.ModelProto:
    """Trace ``module`` on ``args`` into an ONNX model following ``spec`` (names, dynamic axes, opset)."""
    buf = io.BytesIO()
    with torch.no_grad(), _quiet_exporter():
        torch.onnx.export(
            module,
            tuple(args),
            buf,
            dynamo=False,
            opset_version=graphs.OPSET,
            input_names=spec.input_names,
            output_names=spec.output_names,
            dynamic_axes=spec.dynamic_axes(),
            do_constant_folding=True,
        )
    model = onnx.load_model_from_string(buf.getvalue())
    _restore_unused_inputs(model, spec)
    _check_interface(model, spec)
    compact(model)
    model.doc_string = f"parawave {spec.role}"
    # the exporter stamps itself ("pytorch", torch.__version__): the bytes, hence the bundle's sha256,
    # would change with the torch release (pyproject allows a range) though the graph does not
    model.producer_name, model.producer_version = "parawave", ""
    return model


def compact(model: onnx.ModelProto) -> onnx.ModelProto:
    """Shorter files: intermediate values renamed ``v<n>``, node names and doc strings dropped (the
    tracer's names, e.g. ``/student/flows.0/stack/layers.1/conv/Conv_output_0``, were most of a small
    model's bytes). Graph inputs, outputs and initializers keep their names. In place."""
    graph = model.graph
    keep = (
        {v.name for v in graph.input} | {v.name for v in graph.output} | {i.name for i in graph.initializer}
    )
    names: dict[str, str] = {}

    def short(name: str) -> str:
        if not name or name in keep:
            return name
        if name not in names:
            names[name] = f"v{len(names)}"
        return names[name]

    for node in graph.node:
        node.input[:] = [short(x) for x in node.input]
        node.output[:] = [short(x) for x in node.output]
        node.name = ""
        node.doc_string = ""
    del graph.value_info[:]
    graph.doc_string = ""
    return model


def _restore_unused_inputs(model: onnx.ModelProto, spec: GraphSpec) -> None:
    """The tracer drops inputs the model ignores (``speaker`` of a single-speaker model): put them
    back, unused, so every graph of a role has the same interface."""
    have = {i.name: i for i in model.graph.input}
    if list(have) == spec.input_names:
        return
    elem = {"float32": TensorProto.FLOAT, "int64": TensorProto.INT64}
    inputs = []
    for t in spec.inputs:
        if t.name in have:
            inputs.append(have[t.name])
        else:
            dims = [a if a in graphs.DYNAMIC_AXES else None for a in t.axes]
            inputs.append(helper.make_tensor_value_info(t.name, elem[t.dtype], dims))
    del model.graph.input[:]
    model.graph.input.extend(inputs)


def _check_interface(model: onnx.ModelProto, spec: GraphSpec) -> None:
    got_in = [i.name for i in model.graph.input]
    got_out = [o.name for o in model.graph.output]
    if got_in != spec.input_names or got_out != spec.output_names:
        raise RuntimeError(
            f"{spec.role}: exported graph has inputs {got_in} / outputs {got_out}, expected "
            f"{spec.input_names} / {spec.output_names} (an input the model ignores is dropped by the tracer)"
        )


def save(model: onnx.ModelProto, path: str | Path) -> Path:
    path = Path(path)
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return path


# -- acoustic and student --------------------------------------------------------------------------


def example_text(batch: int = 2, length: int = 7, n_symbols: int = 10, n_speakers: int = 1):
    g = torch.Generator().manual_seed(0)
    phonemes = torch.randint(1, max(2, n_symbols), (batch, length), generator=g)
    lengths = torch.full((batch,), length, dtype=torch.long)
    lengths[-1] = max(1, length - 2)
    phonemes[-1, lengths[-1] :] = 0
    speaker = example_speakers(batch, n_speakers)  # (B, S)
    speed = torch.linspace(0.9, 1.1, batch)
    pitch = torch.linspace(-1.0, 2.0, batch)
    return phonemes, lengths, speaker, speed, pitch


def export_acoustic(acoustic: nn.Module) -> onnx.ModelProto:
    cfg = acoustic.cfg
    args = example_text(2, 7, cfg.n_symbols, cfg.n_speakers)
    return export_graph(AcousticGraph(prepare(acoustic)), args, graphs.ACOUSTIC)


def example_mel(batch: int, frames: int, n_mels: int, n_speakers: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    mel = torch.randn(batch, n_mels, frames, generator=g) * 2.0 - 5.0  # (B, n_mels, F), log-mel-like
    return mel, example_speakers(batch, n_speakers)


def example_speakers(batch: int, n_speakers: int) -> Tensor:
    """Speaker weights (B, S): one-hot rows, the last a 50/50 blend of the first two speakers when the
    model has several (the graphs take weights: ``service.graphs``, bundle format 3)."""
    w = torch.eye(n_speakers)[torch.arange(batch) % n_speakers]  # (B, S)
    if n_speakers > 1 and batch > 1:
        w[-1] = 0.0
        w[-1, :2] = 0.5
    return w


def export_student(student: nn.Module) -> onnx.ModelProto:
    cfg = student.cfg
    mel, speaker = example_mel(2, 3, cfg.n_mels, cfg.n_speakers)
    g = torch.Generator().manual_seed(1)
    z = torch.randn(2, 3 * cfg.hop_length, generator=g)
    excitation = example_excitation(2, 3, cfg.hop_length, cfg.sample_rate)
    return export_graph(StudentGraph(prepare(student)), (z, mel, speaker, excitation), graphs.STUDENT)


def example_excitation(batch: int, frames: int, hop: int, sample_rate: int, seed: int = 0) -> Tensor:
    """(B, 3, frames*hop): the excitation of a random F0 contour with voiced and unvoiced frames."""
    from core.excitation import excitation

    rng = np.random.default_rng(seed)
    f0 = rng.uniform(80.0, 250.0, (batch, frames)) * (rng.random((batch, frames)) < 0.7)  # (B, F)
    return torch.from_numpy(excitation(f0, hop, sample_rate))


# -- teacher -----------------------------------------------------------------------------------------


def export_teacher_cond(teacher: nn.Module) -> onnx.ModelProto:
    cfg = teacher.cfg
    mel, speaker = example_mel(2, 3, cfg.n_mels, cfg.n_speakers)
    spec = graphs.TEACHER_COND_LP if is_lp(teacher) else graphs.TEACHER_COND
    return export_graph(TeacherCondGraph(prepare(teacher)), (mel, speaker), spec)


def export_teacher_step(teacher: nn.Module) -> onnx.ModelProto:
    teacher = prepare(teacher)
    state = teacher.init_state(2)
    C = teacher.stack.cond_size
    g = torch.Generator().manual_seed(0)
    cfg = teacher.cfg
    exc_t = example_excitation(2, 1, cfg.hop_length, cfg.sample_rate)[:, :, cfg.hop_length // 2]  # (2, 3)
    lp = is_lp(teacher)
    lpc_t = (0.1 * torch.randn(2, cfg.lpc_order, generator=g),) if lp else ()  # (2, p)
    args = (torch.zeros(2, 1), torch.randn(2, C, generator=g), exc_t, *lpc_t, torch.randn(2, generator=g))
    spec = graphs.teacher_step(len(state), lp)
    return export_graph(TeacherStepGraph(teacher), (*args, *state), spec)


def export_teacher_block(
    teacher: nn.Module, step: onnx.ModelProto | None = None, unroll: int = TEACHER_UNROLL
) -> onnx.ModelProto:
    step = step if step is not None else export_teacher_step(teacher)
    kernel = teacher.stack.upsampler.kernel.detach().float().cpu().numpy()  # (3, hop)
    model = teacher_block_model(step, kernel, unroll)
    names = [i.name for i in step.graph.input]
    _check_interface(model, graphs.teacher_block(graphs.count_states(names), graphs.is_lp(names)))
    return model


# -- fp16 ----------------------------------------------------------------------------------------------


def to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """A float16 copy of a float32 graph with the same float32 interface (casts at the edges).

    Every float initializer and Constant becomes float16, ``Cast(to=float)`` casts to float16
    instead, float inputs are cast down right after the graph input and float outputs cast up right
    before the graph output. Integer (shape) computations are untouched. For the CUDA provider
    (ONNX Runtime's CPU provider has few float16 kernels).
    """
    model = copy.deepcopy(model)
    graph = model.graph
    f32, f16 = TensorProto.FLOAT, TensorProto.FLOAT16

    def half(t: onnx.TensorProto) -> onnx.TensorProto:
        if t.data_type != f32:
            return t
        arr = numpy_helper.to_array(t).astype(np.float16)
        return numpy_helper.from_array(arr, t.name)

    for i, init in enumerate(graph.initializer):
        graph.initializer[i].CopyFrom(half(init))
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR:
                attr.t.CopyFrom(half(attr.t))
            elif attr.name == "to" and attr.i == f32 and node.op_type == "Cast":
                attr.i = f16
            elif attr.type == onnx.AttributeProto.GRAPH:
                raise ValueError("to_fp16 does not convert subgraphs")
    renamed: dict[str, str] = {}
    head = []
    for inp in graph.input:
        if inp.type.tensor_type.elem_type == f32:
            renamed[inp.name] = inp.name + "_fp16"
            head.append(helper.make_node("Cast", [inp.name], [renamed[inp.name]], to=f16))
    for node in graph.node:
        node.input[:] = [renamed.get(x, x) for x in node.input]
    tail = []
    for out in graph.output:
        if out.type.tensor_type.elem_type == f32:
            inner = out.name + "_fp16"
            for node in graph.node:
                node.output[:] = [inner if x == out.name else x for x in node.output]
                node.input[:] = [inner if x == out.name else x for x in node.input]
            tail.append(helper.make_node("Cast", [inner], [out.name], to=f32))
    nodes = head + list(graph.node) + tail
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.value_info[:]
    model.doc_string += " (fp16)"
    return model
