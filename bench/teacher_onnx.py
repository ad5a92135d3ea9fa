"""How to run the autoregressive teacher in ONNX Runtime: per-sample cost of each way, one table.

    python -m bench.teacher_onnx [--preset cpu] [--frames 4] [--repeats 3] [--checkpoint CKPT]

Generation needs one network evaluation per sample (16,000 per second of audio), each a chain of
small ops (batch 1, tens of channels), so the fixed costs per op and per call decide the speed:

- ``torch eager``: ``TeacherWaveNet.generate`` (cached queues), 1 thread -- the reference;
- ``step run()``: the ``teacher_step`` graph, one ``InferenceSession.run`` per sample from a Python
  loop (feeds: x, cond_t, noise and every cache; fetches: sample, mean, log_scale, every cache);
- ``step run(), batch 1``: the same with the batch dimension fixed to 1 for ORT
  (``add_free_dimension_override_by_name``), so its optimiser folds the shape arithmetic that
  the traced graph does on the batch size (about a third of the step graph's nodes);
- ``block Scan``: the ``teacher_block`` graph: the frames' conditioning upsampled in the graph and
  the step graph as the body of an ONNX ``Scan`` over the samples -- one call per run of frames,
  the per-sample loop inside ORT;
- ``block Scan, batch 1``: what the engine runs;
- ``block Scan x4, batch 1``: 4 chained step graphs per Scan iteration (``unroll=4``).

Every variant generates the same samples (same noise; checked against the first). Times are per
generated sample: CPU time of this process (less sensitive to other load on a shared machine) and
wall time, best and median of ``--repeats``. Weights are random unless ``--checkpoint``.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import platform
import shutil
import statistics
import tempfile
import time

import numpy as np
import onnx
import onnxruntime as ort
import torch

from export import onnx as onnx_export
from export.parity import session  # one CPU thread, optional batch-1 override
from model.teacher import PRESETS, TeacherWaveNet, load_teacher
from service import graphs
from service.sessions import session_options


def _optimized_nodes(model: onnx.ModelProto, batch_one: bool, path: str) -> int:
    so = session_options(1, batch_one=batch_one)
    so.optimized_model_filepath = path
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return len(onnx.load(path).graph.node)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="cpu", choices=sorted(PRESETS))
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument(
        "--frames", type=int, default=4, help="frames generated per timing (hop samples each)"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--lpc-order", type=int, default=0, help="a preset with linear prediction of this order (issue 38)"
    )
    args = parser.parse_args()

    torch.manual_seed(0)
    preset = dataclasses.replace(PRESETS[args.preset], lpc_order=args.lpc_order)
    model = load_teacher(args.checkpoint)[0] if args.checkpoint else TeacherWaveNet(preset)
    teacher = onnx_export.prepare(model)
    cfg = teacher.cfg
    hop = cfg.hop_length
    F = args.frames
    T = F * hop
    step = onnx_export.export_teacher_step(teacher)
    block1 = onnx_export.export_teacher_block(teacher, step, unroll=1)
    block4 = onnx_export.export_teacher_block(teacher, step, unroll=4)

    g = torch.Generator().manual_seed(0)
    mel = torch.randn(1, cfg.n_mels, F, generator=g) * 2.0 - 5.0
    speaker = torch.zeros(1, dtype=torch.long)
    noise = torch.randn(1, T, generator=g)
    exc = onnx_export.example_excitation(1, F, hop, cfg.sample_rate)  # (1, 3, T)
    e = exc.numpy()
    with torch.no_grad():
        cond = teacher.frame_conditioning(mel, speaker)  # (1, C, F)
        up = teacher.stack.upsampler(cond).numpy()  # (1, C, T)
        lpc = teacher.frame_lpc(mel)  # (1, p, F): an LP teacher's graphs take it (service.graphs)
    lp = lpc is not None
    lpc = lpc.numpy() if lp else None
    cond_np = cond.numpy()
    padded = np.concatenate([cond_np[:, :, :1], cond_np, cond_np[:, :, -1:]], axis=2)
    z = noise.numpy()
    init = [s.numpy() for s in teacher.init_state(1)]

    def torch_eager():
        return teacher.generate(mel, speaker, noise=noise, num_threads=1, excitation=exc).numpy()

    def step_loop(sess):
        names = graphs.teacher_step(len(init), lp).input_names
        x, state = np.zeros((1, 1), np.float32), init
        out = np.empty((1, T), np.float32)
        for t in range(T):
            lpc_t = [lpc[:, :, t // hop]] if lp else []
            feeds = [x, up[:, :, t], e[:, :, t], *lpc_t, z[:, t], *state]
            res = sess.run(None, dict(zip(names, feeds, strict=True)))
            out[:, t] = res[0]
            x, state = res[0][:, None], res[3:]
        return out

    def block(sess):
        names = graphs.teacher_block(len(init), lp).input_names
        feeds = [padded, e, *([lpc] if lp else []), z, np.zeros((1, 1), np.float32), *init]
        return sess.run(None, dict(zip(names, feeds, strict=True)))[0]

    variants = [
        ("torch eager (cached queues)", torch_eager),
        ("step run() per sample", lambda s=session(step, False): step_loop(s)),
        ("step run() per sample, batch 1", lambda s=session(step, True): step_loop(s)),
        ("block Scan", lambda s=session(block1, False): block(s)),
        ("block Scan, batch 1 (engine)", lambda s=session(block1, True): block(s)),
        ("block Scan x4 unrolled, batch 1", lambda s=session(block4, True): block(s)),
    ]
    tmp = tempfile.mkdtemp(prefix="pw-bench-")
    step_ops = collections.Counter(n.op_type for n in step.graph.node if n.op_type != "Constant")
    print(
        f"teacher {args.checkpoint or 'preset ' + args.preset}: {teacher.num_parameters():,} parameters, "
        f"{cfg.layers} layers x {cfg.residual_channels} channels; step graph {sum(step_ops.values())} ops "
        f"(after ORT optimisation: {_optimized_nodes(step, False, tmp + '/step.onnx')} with a dynamic batch, "
        f"{_optimized_nodes(step, True, tmp + '/step1.onnx')} with batch 1)"
    )
    print(
        f"  {platform.machine()}, onnxruntime {ort.__version__}, torch {torch.__version__}; {T} samples per run"
    )
    shutil.rmtree(tmp, ignore_errors=True)
    print(
        f"{'variant':<34} {'CPU us/sample':>22} {'wall us/sample':>22} {'samples/s':>10} {'max |diff|':>10}"
    )
    reference = None
    for name, fn in variants:
        fn()  # warm-up
        cpu, wall = [], []
        for _ in range(args.repeats):
            c0, t0 = time.process_time(), time.perf_counter()
            audio = fn()
            cpu.append((time.process_time() - c0) / T * 1e6)
            wall.append((time.perf_counter() - t0) / T * 1e6)
        if reference is None:
            reference = audio
        diff = float(np.max(np.abs(audio - reference)))
        print(
            f"{name:<34} {min(cpu):>9.1f} (med {statistics.median(cpu):>7.1f}) "
            f"{min(wall):>9.1f} (med {statistics.median(wall):>7.1f}) {1e6 / min(wall):>10,.0f} {diff:>10.1e}"
        )


if __name__ == "__main__":
    main()
