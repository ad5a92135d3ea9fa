"""Exported graphs vs PyTorch (random weights, several lengths) and the graph interfaces."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from export import onnx as onnx_export
from export import parity
from model.acoustic import AcousticConfig, AcousticModel
from model.student import StudentIAF
from model.student import preset as student_preset
from model.teacher import TeacherWaveNet
from model.teacher import preset as teacher_preset
from model.wavenet import Layout
from service import graphs

N_MELS = 20


def perturbed(model: torch.nn.Module, seed: int = 0, scale: float = 0.2) -> torch.nn.Module:
    """Random weights away from the initialisation (the student's zero heads make it the identity)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
    return model.eval()


@pytest.fixture(scope="module")
def acoustic():
    torch.manual_seed(0)
    cfg = AcousticConfig.preset("tiny", n_symbols=40, n_speakers=2, n_mels=N_MELS)
    model = perturbed(AcousticModel(cfg))
    with torch.no_grad():
        model.dur_out.bias.fill_(1.5)  # a few frames per phoneme
        model.pitch_out.bias[1] = 4.0  # mostly voiced, so the F0 output is compared where it is not 0
    return model


@pytest.fixture(scope="module")
def student():
    torch.manual_seed(0)
    return perturbed(StudentIAF(student_preset("tiny", n_mels=N_MELS, n_speakers=2)), seed=1, scale=0.1)


@pytest.fixture(scope="module")
def teacher():
    torch.manual_seed(0)
    return perturbed(TeacherWaveNet(teacher_preset("tiny", n_mels=N_MELS, n_speakers=2)), seed=2)


@pytest.fixture(scope="module")
def teacher_step(teacher):
    return onnx_export.export_teacher_step(teacher)


def test_acoustic_matches_pytorch(acoustic):
    result = parity.acoustic_parity(acoustic, onnx_export.export_acoustic(acoustic), lengths=(2, 9, 31))
    print(result)
    assert len(result.cases) == 8 and result.max_abs < 1e-4  # mel and F0 of 4 cases


def test_acoustic_pitch_input_shifts_f0(acoustic):
    """The graph's pitch input (semitones) scales the voiced F0 by 2^(p/12) and changes the mel."""
    sess = parity.session(onnx_export.export_acoustic(acoustic))
    phonemes = np.arange(1, 13, dtype=np.int64)[None]
    feeds = {
        "phonemes": phonemes,
        "lengths": np.array([12]),
        graphs.SPEAKER_WEIGHTS: np.eye(acoustic.cfg.n_speakers, dtype=np.float32)[:1],  # (1, S) one-hot
        "speed": np.ones(1, np.float32),
    }
    mel0, _, _, f0 = sess.run(None, {**feeds, "pitch": np.zeros(1, np.float32)})
    mel5, _, _, f5 = sess.run(None, {**feeds, "pitch": np.full(1, 5.0, np.float32)})
    voiced = f0 > 0
    assert voiced.mean() > 0.3 and np.array_equal(voiced, f5 > 0)
    np.testing.assert_allclose(f5[voiced] / f0[voiced], 2 ** (5 / 12), rtol=1e-4)
    assert np.abs(mel5 - mel0).max() > 0  # the decoder hears the pitch (nonzero embedding here)


def test_student_matches_pytorch_fp32_and_fp16(student):
    graph = onnx_export.export_student(student)
    result = parity.student_parity(student, graph, frames=(1, 6, 37))
    print(result)
    assert result.max_abs < 1e-4
    half = onnx_export.to_fp16(graph)
    assert {i.data_type for i in half.graph.initializer if i.data_type in (1, 10)} == {
        onnx.TensorProto.FLOAT16
    }
    assert [i.type.tensor_type.elem_type for i in half.graph.input] == [
        i.type.tensor_type.elem_type for i in graph.graph.input
    ]  # the interface stays float32
    result16 = parity.student_parity(student, half, frames=(1, 6, 37), precision="fp16")
    print(result16)
    assert 0 < result16.max_abs < parity.BOUNDS["fp16"]


def test_teacher_cond_matches_pytorch(teacher):
    result = parity.teacher_cond_parity(teacher, onnx_export.export_teacher_cond(teacher), frames=(1, 5, 19))
    print(result)
    assert result.max_abs < 1e-4


def test_teacher_step_graph_reproduces_cached_generation(teacher, teacher_step):
    """One ORT call per sample, the sample fed back: same audio as TeacherWaveNet.generate with the
    same noise sequence."""
    result = parity.teacher_step_parity(teacher, teacher_step, frames=2, batch=2)
    print(result)
    assert result.max_abs < 1e-4


@pytest.mark.parametrize("unroll", [1, 4])
def test_teacher_block_graph_reproduces_cached_generation(teacher, teacher_step, unroll):
    block = onnx_export.export_teacher_block(teacher, teacher_step, unroll=unroll)
    result = parity.teacher_block_parity(teacher, block, frames=4)
    print(result)
    assert result.max_abs < 1e-4


def test_teacher_block_graph_hears_the_excitation(teacher, teacher_step):
    """The excitation input reaches every sample: a zero excitation (or one a sample late) gives
    different audio from the same noise, so the parity above can fail on it."""
    block = onnx_export.export_teacher_block(teacher, teacher_step)
    sess = parity.session(block)
    hop, F = teacher.cfg.hop_length, 3
    cond = np.random.default_rng(0).normal(size=(1, teacher.stack.cond_size, F)).astype(np.float32)
    exc = onnx_export.example_excitation(1, F, hop, teacher.cfg.sample_rate).numpy()  # (1, 3, T)
    noise = np.random.default_rng(1).standard_normal((1, F * hop), dtype=np.float32)

    def run(e):
        return parity.run_teacher_block(sess, cond, e, noise, hop, runs=(F,))

    a = run(exc)
    assert np.abs(a - run(np.zeros_like(exc))).max() > 1e-3
    assert np.abs(a - run(np.roll(exc, 1, axis=2))).max() > 1e-3
    np.testing.assert_array_equal(a, run(exc))


def test_per_layer_excitation_teacher_graphs_match_pytorch():
    """A teacher whose excitation reaches every layer exports the same interface (exc_t per sample)
    and its block graph reproduces PyTorch's cached generation; it hears the excitation."""
    torch.manual_seed(0)
    model = perturbed(
        TeacherWaveNet(teacher_preset("tiny", n_mels=N_MELS, n_speakers=2, excitation_layers=True)), seed=4
    )
    with torch.no_grad():  # only the layers hear the excitation: a wrong per-layer graph cannot hide
        model.excitation_conv.weight.zero_()
        model.excitation_conv.bias.zero_()
    step = onnx_export.export_teacher_step(model)
    assert [i.name for i in step.graph.input] == graphs.teacher_step(len(model.init_state(1))).input_names
    block = onnx_export.export_teacher_block(model, step)
    assert parity.teacher_block_parity(model, block, frames=3).max_abs < 1e-4
    sess = parity.session(block)
    hop, F = model.cfg.hop_length, 3
    cond = np.random.default_rng(0).normal(size=(1, model.stack.cond_size, F)).astype(np.float32)
    exc = onnx_export.example_excitation(1, F, hop, model.cfg.sample_rate).numpy()  # (1, 3, T)
    noise = np.random.default_rng(1).standard_normal((1, F * hop), dtype=np.float32)
    a = parity.run_teacher_block(sess, cond, exc, noise, hop, runs=(F,))
    assert (
        np.abs(a - parity.run_teacher_block(sess, cond, np.zeros_like(exc), noise, hop, runs=(F,))).max()
        > 1e-3
    )


def test_mel_only_teacher_graphs_keep_the_excitation_input():
    """A teacher without excitation (an old checkpoint) exports the same interface, exc_t and
    excitation unused, and still matches PyTorch."""
    torch.manual_seed(0)
    model = perturbed(TeacherWaveNet(teacher_preset("tiny", n_mels=N_MELS, excitation_channels=0)), seed=3)
    step = onnx_export.export_teacher_step(model)
    assert [i.name for i in step.graph.input] == graphs.teacher_step(len(model.init_state(1))).input_names
    block = onnx_export.export_teacher_block(model, step)
    assert parity.teacher_block_parity(model, block, frames=3).max_abs < 1e-4


def test_parity_fails_for_a_different_model(student):
    """The check can fail: the graph of other weights is caught."""
    other = perturbed(StudentIAF(student_preset("tiny", n_mels=N_MELS, n_speakers=2)), seed=7, scale=0.1)
    with pytest.raises(parity.ParityError):
        parity.student_parity(student, onnx_export.export_student(other), frames=(3,))


def test_weight_norm_is_folded_before_export():
    torch.manual_seed(0)
    model = perturbed(TeacherWaveNet(teacher_preset("tiny", n_mels=N_MELS, weight_norm=True)))
    assert any("parametrizations" in n for n, _ in model.named_parameters())
    graph = onnx_export.export_teacher_cond(model)
    names = [i.name for i in graph.graph.initializer]
    assert not any("original" in n or "parametrizations" in n for n in names), names
    assert parity.teacher_cond_parity(model, graph, frames=(4,)).max_abs < 1e-4


@pytest.mark.parametrize("role", ["acoustic", "student", "teacher_cond", "teacher_block"])
def test_graphs_follow_the_shared_spec(role, acoustic, student, teacher, teacher_step):
    graph = {
        "acoustic": lambda: onnx_export.export_acoustic(acoustic),
        "student": lambda: onnx_export.export_student(student),
        "teacher_cond": lambda: onnx_export.export_teacher_cond(teacher),
        "teacher_block": lambda: onnx_export.export_teacher_block(teacher, teacher_step),
    }[role]()
    assert graph.opset_import[0].version == graphs.OPSET
    spec = graphs.spec_for(role, [i.name for i in graph.graph.input])
    sess = parity.session(graph)
    assert spec.mismatch(sess.get_inputs(), sess.get_outputs()) is None
    for value, t in zip(sess.get_inputs(), spec.inputs, strict=True):
        for axis, name in t.dynamic.items():
            assert isinstance(value.shape[axis], str), f"{role}.{t.name} axis {axis} ({name}) is not dynamic"


def test_export_traces_the_reference_layout(student, teacher):
    """The export wrappers ask for ``Layout.REFERENCE``: every conv module of the stacks is a Conv node
    (what ONNX Runtime runs fast; the graphs stay as they were), and the channels-last training
    layout refuses to be traced instead of exporting other nodes."""

    def convs(model: torch.nn.Module) -> int:
        return sum(isinstance(m, torch.nn.Conv1d) for m in model.modules())

    def conv_nodes(graph: onnx.ModelProto) -> int:
        return sum(node.op_type == "Conv" for node in graph.graph.node)

    # the student's per-flow conditioning projections run as one fused Conv; the heads are 1x1 convs
    assert conv_nodes(onnx_export.export_student(student)) == convs(student) - student.cfg.n_flows + 1
    cond_convs = convs(teacher.conditioning) + 1  # + the stack's conditioning projection
    assert conv_nodes(onnx_export.export_teacher_cond(teacher)) == cond_convs

    class ChannelsLast(torch.nn.Module):
        def __init__(self, student):
            super().__init__()
            self.student = student

        def forward(self, z, mel, speaker, excitation):
            return self.student(z, mel, speaker, excitation=excitation, layout=Layout.CHANNELS_LAST)

    args = (torch.zeros(2, 3 * student.cfg.hop_length), *onnx_export.example_mel(2, 3, N_MELS, 2))
    args += (torch.zeros(2, 3, 3 * student.cfg.hop_length),)
    with pytest.raises(RuntimeError, match=r"Layout\.REFERENCE"):
        onnx_export.export_graph(ChannelsLast(onnx_export.prepare(student)), args, graphs.STUDENT)


def test_spec_mismatch_is_reported(student):
    sess = parity.session(onnx_export.export_student(student))
    problem = graphs.ACOUSTIC.mismatch(sess.get_inputs(), sess.get_outputs())
    assert problem is not None and "acoustic graph inputs" in problem


def test_single_speaker_graph_keeps_the_speaker_input():
    """The tracer drops an unused input; the export puts it back so every graph of a role has the
    same interface."""
    torch.manual_seed(0)
    model = perturbed(StudentIAF(student_preset("tiny", n_mels=N_MELS, n_speakers=1)), scale=0.1)
    graph = onnx_export.export_student(model)
    assert [i.name for i in graph.graph.input] == graphs.STUDENT.input_names
    sess = parity.session(graph)
    z = np.zeros((1, 400), np.float32)
    mel = np.full((1, N_MELS, 2), -5.0, np.float32)
    e = np.zeros((1, 3, 400), np.float32)
    w = graphs.SPEAKER_WEIGHTS
    a = sess.run(None, {"z": z, "mel": mel, w: np.ones((1, 1), np.float32), "excitation": e})[0]
    b = sess.run(None, {"z": z, "mel": mel, w: np.full((1, 3), 0.5, np.float32), "excitation": e})[0]
    np.testing.assert_array_equal(a, b)
