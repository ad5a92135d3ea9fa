"""The ``teacher_block`` graph: N frames of the teacher's autoregressive generation in one ONNX call.

Built from the exported ``teacher_step`` graph (:func:`export.onnx.export_teacher_step`, one
sample, caches as explicit inputs and outputs) with ONNX's own ``helper`` API, not by tracing: an
in-graph 3-tap upsampling of the frames' conditioning (the teacher's ``FrameUpsampler`` kernel),
then a ``Scan`` over the samples whose body is the step graph (``unroll`` chained copies of it,
sharing one set of weights). The interface is ``service.graphs.teacher_block``;
:func:`export.onnx.export_teacher_block` checks the result against it. Why a Scan, and the measured
per-sample costs: :mod:`export.onnx` and ``python -m export.bench_teacher``.
"""

from __future__ import annotations

import copy

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from service import graphs

__all__ = ["teacher_block_model"]

INT64_MAX = np.iinfo(np.int64).max


def _const(name: str, value) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.array(value, np.int64)))


def teacher_block_model(step: onnx.ModelProto, kernel: np.ndarray, unroll: int = 1) -> onnx.ModelProto:
    """The ``teacher_block`` graph: in-graph upsampling of N frames + ``Scan`` of the step graph.

    Scan inputs, one (K, B, .) slice per iteration: the upsampled conditioning (T/K, K, B, C), the
    excitation (T/K, K, B, 3) (given at the sample rate), a linear-prediction teacher's coefficients
    (T/K, K, B, p) (given per frame, (B, p, N), held for the frame's hop samples in the graph) and
    the noise (T/K, K, B).

    step: the ``teacher_step`` model; kernel (3, hop): the teacher's upsampling kernel
    (``FrameUpsampler.kernel``: sample p of frame f = sum_j kernel[j, p] * cond[f - 1 + j]);
    unroll: samples per Scan iteration (the body chains that many copies of the step graph, which
    share one set of weights), a divisor of hop. Scan's fixed cost per iteration is then paid once
    per ``unroll`` samples.
    """
    hop = kernel.shape[1]
    if unroll < 1 or hop % unroll:
        raise ValueError(f"unroll ({unroll}) must divide the hop length ({hop})")
    K = unroll
    n_states = graphs.count_states([i.name for i in step.graph.input])
    lp = graphs.is_lp([i.name for i in step.graph.input])  # the LP form: lpc_t per sample
    spec = graphs.teacher_block(n_states, lp)
    step_spec = graphs.teacher_step(n_states, lp)
    if [i.name for i in step.graph.input] != step_spec.input_names:
        raise ValueError("not a teacher_step graph")
    states_in = graphs.state_names(n_states)
    states_out = graphs.state_names(n_states, out=True)
    step_in = {i.name: i for i in step.graph.input}
    step_out = {o.name: o for o in step.graph.output}

    def value(name: str, src: onnx.ValueInfoProto) -> onnx.ValueInfoProto:
        v = copy.deepcopy(src)
        v.name = name
        return v

    # Weights live in the outer graph (the body reads them from the enclosing scope), once for all
    # K copies; body names are prefixed so they cannot clash with the outer graph's.
    w = "w/"
    initializers = []
    for init in step.graph.initializer:
        t = copy.deepcopy(init)
        t.name = w + t.name
        initializers.append(t)
    weights = {i.name for i in step.graph.initializer}

    b = "body/"
    body_nodes = [
        _const(b + "axis0", [0]),
        _const(b + "axis1", [1]),
        _const(b + "ones", [1] * K),
        # per-iteration inputs (K, B, C), (K, B, 3) and (K, B) -> K slices
        helper.make_node("Split", [b + "cond_k", b + "ones"], [f"{b}cond_{k}" for k in range(K)], axis=0),
        helper.make_node("Split", [b + "exc_k", b + "ones"], [f"{b}exc_{k}" for k in range(K)], axis=0),
        helper.make_node("Split", [b + "noise_k", b + "ones"], [f"{b}noise_{k}" for k in range(K)], axis=0),
    ]
    if lp:
        body_nodes.append(
            helper.make_node("Split", [b + "lpc_k", b + "ones"], [f"{b}lpc_{k}" for k in range(K)], axis=0)
        )
    x, state = b + "x_prev", [b + s for s in states_in]
    samples = []
    for k in range(K):
        p = f"{b}s{k}/"
        body_nodes.append(helper.make_node("Squeeze", [f"{b}cond_{k}", b + "axis0"], [p + "cond_t"]))
        body_nodes.append(helper.make_node("Squeeze", [f"{b}exc_{k}", b + "axis0"], [p + "exc_t"]))
        body_nodes.append(helper.make_node("Squeeze", [f"{b}noise_{k}", b + "axis0"], [p + "noise"]))
        names = {"x_prev": x, "cond_t": p + "cond_t", "exc_t": p + "exc_t", "noise": p + "noise"}
        if lp:
            body_nodes.append(helper.make_node("Squeeze", [f"{b}lpc_{k}", b + "axis0"], [p + "lpc_t"]))
            names[graphs.LPC_T] = p + "lpc_t"
        names.update(zip(states_in, state, strict=True))

        def rename(v: str, p=p, names=names) -> str:
            if not v:
                return v
            if v in names:
                return names[v]
            return w + v if v in weights else p + v

        for node in step.graph.node:
            n = copy.deepcopy(node)
            n.input[:] = [rename(v) for v in n.input]
            n.output[:] = [rename(v) for v in n.output]
            n.name = ""
            body_nodes.append(n)
        body_nodes.append(
            helper.make_node("Unsqueeze", [p + "sample", b + "axis1"], [p + "x_next"])
        )  # (B, 1)
        body_nodes.append(
            helper.make_node("Unsqueeze", [p + "sample", b + "axis0"], [p + "sample_1"])
        )  # (1, B)
        x, state = p + "x_next", [p + s for s in states_out]
        samples.append(p + "sample_1")
    # loop-carried outputs must be fresh names: Identity from the last copy
    body_nodes.append(helper.make_node("Identity", [x], [b + "x_out"]))
    body_nodes += [helper.make_node("Identity", [s], [b + o]) for s, o in zip(state, states_out, strict=True)]
    body_nodes.append(helper.make_node("Concat", samples, [b + "samples"], axis=0))  # (K, B)

    cond_dim = step_in["cond_t"].type.tensor_type.shape.dim[1]
    cond_k = helper.make_tensor_value_info(b + "cond_k", TensorProto.FLOAT, [K, "batch", None])
    cond_k.type.tensor_type.shape.dim[2].CopyFrom(cond_dim)
    exc_dim = step_in["exc_t"].type.tensor_type.shape.dim[1]
    exc_k = helper.make_tensor_value_info(b + "exc_k", TensorProto.FLOAT, [K, "batch", None])
    exc_k.type.tensor_type.shape.dim[2].CopyFrom(exc_dim)
    body_inputs = [value(b + "x_prev", step_in["x_prev"])]
    body_inputs += [value(b + s, step_in[s]) for s in states_in]
    body_inputs += [cond_k, exc_k]
    if lp:
        lpc_dim = step_in[graphs.LPC_T].type.tensor_type.shape.dim[1]
        lpc_k = helper.make_tensor_value_info(b + "lpc_k", TensorProto.FLOAT, [K, "batch", None])
        lpc_k.type.tensor_type.shape.dim[2].CopyFrom(lpc_dim)
        body_inputs.append(lpc_k)
    body_inputs += [helper.make_tensor_value_info(b + "noise_k", TensorProto.FLOAT, [K, "batch"])]
    body_outputs = [value(b + "x_out", step_in["x_prev"])]
    body_outputs += [value(b + s, step_out[s]) for s in states_out]
    body_outputs += [helper.make_tensor_value_info(b + "samples", TensorProto.FLOAT, [K, "batch"])]
    body = helper.make_graph(body_nodes, "teacher_step_body", body_inputs, body_outputs)

    nodes = [
        _const(name, v)
        for name, v in (
            ("c_axis", [2]),
            ("c_0", [0]),
            ("c_1", [1]),
            ("c_2", [2]),
            ("c_m1", [-1]),
            ("c_m2", [-2]),
            ("c_end", [INT64_MAX]),
            ("c_3", [3]),
            ("c_cond_shape", [0, 0, -1, K]),
            ("c_noise_shape", [0, -1, K]),
            ("c_audio_shape", [0, -1]),
        )
    ]
    nodes += [
        # neighbours: [c[f-1], c[f], c[f+1]] for the N frames of the window -> (B, C, N, 3)
        helper.make_node("Slice", ["cond", "c_0", "c_m2", "c_axis"], ["prev"]),
        helper.make_node("Slice", ["cond", "c_1", "c_m1", "c_axis"], ["this"]),
        helper.make_node("Slice", ["cond", "c_2", "c_end", "c_axis"], ["next"]),
        helper.make_node("Unsqueeze", ["prev", "c_3"], ["prev4"]),
        helper.make_node("Unsqueeze", ["this", "c_3"], ["this4"]),
        helper.make_node("Unsqueeze", ["next", "c_3"], ["next4"]),
        helper.make_node("Concat", ["prev4", "this4", "next4"], ["neighbours"], axis=3),
        # per-phase interpolation: (B, C, N, 3) @ (3, hop) -> (B, C, N, hop) -> (B, C, N*hop/K, K)
        helper.make_node("MatMul", ["neighbours", "upsample_kernel"], ["up4"]),
        helper.make_node("Reshape", ["up4", "c_cond_shape"], ["up"]),
        helper.make_node("Transpose", ["up"], ["cond_scan"], perm=[2, 3, 0, 1]),  # (T/K, K, B, C)
        helper.make_node("Reshape", ["excitation", "c_cond_shape"], ["exc4"]),  # (B, 3, T/K, K)
        helper.make_node("Transpose", ["exc4"], ["exc_scan"], perm=[2, 3, 0, 1]),  # (T/K, K, B, 3)
        helper.make_node("Reshape", ["noise", "c_noise_shape"], ["noise3"]),  # (B, T/K, K)
        helper.make_node("Transpose", ["noise3"], ["noise_scan"], perm=[1, 2, 0]),  # (T/K, K, B)
    ]
    lpc_scan = []
    if lp:  # frame hold: (B, p, N) -> (B, p, N, hop) -> (B, p, T/K, K) -> (T/K, K, B, p)
        nodes += [
            _const("c_hold", [1, 1, 1, hop]),
            helper.make_node("Unsqueeze", [graphs.LPC, "c_3"], ["lpc4"]),  # (B, p, N, 1)
            helper.make_node("Tile", ["lpc4", "c_hold"], ["lpc_held"]),  # (B, p, N, hop)
            helper.make_node("Reshape", ["lpc_held", "c_cond_shape"], ["lpc_k4"]),  # (B, p, T/K, K)
            helper.make_node("Transpose", ["lpc_k4"], ["lpc_scan"], perm=[2, 3, 0, 1]),  # (T/K, K, B, p)
        ]
        lpc_scan = ["lpc_scan"]
    nodes += [
        helper.make_node(
            "Scan",
            ["x_prev", *states_in, "cond_scan", "exc_scan", *lpc_scan, "noise_scan"],
            ["x_last", *states_out, "samples_scan"],
            body=body,
            num_scan_inputs=3 + len(lpc_scan),
        ),
        helper.make_node("Transpose", ["samples_scan"], ["samples_b"], perm=[2, 0, 1]),  # (B, T/K, K)
        helper.make_node("Reshape", ["samples_b", "c_audio_shape"], ["audio"]),  # (B, T)
    ]
    initializers.append(numpy_helper.from_array(np.ascontiguousarray(kernel, np.float32), "upsample_kernel"))

    def io(t: graphs.TensorSpec, shapes: dict[str, onnx.ValueInfoProto]) -> onnx.ValueInfoProto:
        if t.name in shapes:  # states: keep the static channel/context sizes of the step graph
            return value(t.name, shapes[t.name])
        d = [a if a in graphs.DYNAMIC_AXES else None for a in t.axes]
        if t.axes[-1] == "one":
            d[-1] = 1
        return helper.make_tensor_value_info(t.name, TensorProto.FLOAT, d)

    inputs = [io(t, {s: step_in[s] for s in states_in}) for t in spec.inputs]
    inputs[0].type.tensor_type.shape.dim[1].CopyFrom(cond_dim)
    inputs[1].type.tensor_type.shape.dim[1].CopyFrom(exc_dim)
    if lp:
        inputs[2].type.tensor_type.shape.dim[1].CopyFrom(lpc_dim)
    outputs = [io(t, {s: step_out[s] for s in states_out}) for t in spec.outputs]
    graph = helper.make_graph(nodes, "teacher_block", inputs, outputs, initializer=initializers)
    model = helper.make_model(graph, opset_imports=list(step.opset_import), producer_name="parawave")
    model.ir_version = step.ir_version
    model.doc_string = f"parawave teacher_block (unroll {K})"
    return model
