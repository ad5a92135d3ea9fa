"""ONNX Runtime for the engine (torch-free): the execution providers, the one definition of the
session options, CUDA library preloading, and :class:`Graph` (a session checked against its
``service.graphs`` spec).

Providers. ``device="cuda"`` (or ``"auto"`` when onnxruntime has it) runs the acoustic model and
the student on the CUDA provider (cuDNN heuristic algorithm search, a memory limit, I/O binding)
with the CPU provider as fallback for unsupported nodes; otherwise everything runs on the CPU
provider. The provider a session actually got (``get_providers()[0]``, which is what runs when the
CUDA provider failed to load) is :attr:`Graph.provider`.

Session options (:func:`session_options`) are the same for every session parawave builds: the
engine's, the export parity checks' (``export.parity``) and the benchmarks'.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from service import graphs
from service.types import EngineLoadError

log = logging.getLogger(__name__)

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
# One thread per session by default: on the shared 2-core dev box (load 4-5) `parawave bench` gave
# a text->audio RTF median of 0.08 with 1 thread vs 0.19 with 2 (an op split over threads waits
# for the slowest); requests scale out over sessions' callers (PARAWAVE_STUDENT_WORKERS) instead.
DEFAULT_INTRA_OP_THREADS = 1
# ONNX Runtime's CPU arena keeps the peak of the largest input a session has seen, for good. Sentences
# are cut at 300 characters (model.text.split_sentences), but normalization can expand them many
# times (a 298-character sentence of 12-digit numbers: ~3000 phonemes), and one such request held
# ~0.7 GB more RSS after every repeat (recipes/reports/memory-soak). Runs above these lengths give the
# arena back what they took (ORT's arena shrinkage), so what the arena keeps is bounded by them.
ARENA_MAX_PHONEMES = 512  # acoustic model: phonemes per sentence
ARENA_MAX_FRAMES = 1024  # whole-utterance student runs and the teacher's conditioning: mel frames


def ort():
    """The onnxruntime module; EngineLoadError (one line, how to install it) when it is missing."""
    try:
        import onnxruntime
    except ImportError as exc:
        raise EngineLoadError(
            f"onnxruntime is not installed ({exc}); pip install -e '.[cpu]' (or '.[gpu]' for CUDA)"
        ) from None
    return onnxruntime


def session_options(threads: int | None, *, batch_one: bool = False, spin: bool = False):
    """The ``onnxruntime.SessionOptions`` of every parawave session: all graph optimizations,
    sequential execution, one inter-op thread, warnings off; ``threads`` intra-op threads (None or
    0: ONNX Runtime's choice, one per physical core); ``batch_one``: the ``batch`` dimension fixed to
    1 (ORT folds every shape computation on it); ``spin``: idle intra-op threads busy-wait."""
    rt = ort()
    so = rt.SessionOptions()
    so.graph_optimization_level = rt.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = rt.ExecutionMode.ORT_SEQUENTIAL
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = threads
    # Idle intra-op threads busy-wait by default; on a CPU shared with other requests (or
    # processes) that burns cores: measured on the 2-core dev box under load, the cpu
    # student took 0.10 CPU s per audio s without spinning and 0.16 with it.
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    if batch_one:
        so.add_free_dimension_override_by_name("batch", 1)
    return so


def cuda_provider(mem_limit_mb: int | None = None) -> tuple[str, dict[str, Any]]:
    """The CUDA provider with our options: cuDNN heuristic conv search (no benchmarking per new
    shape), an arena that grows only by what is asked, an optional memory limit."""
    opts: dict[str, Any] = {
        "device_id": 0,
        "cudnn_conv_algo_search": "HEURISTIC",
        "arena_extend_strategy": "kSameAsRequested",
        "do_copy_in_default_stream": True,
    }
    if mem_limit_mb:
        opts["gpu_mem_limit"] = int(mem_limit_mb) * 1024 * 1024
    return CUDA, opts


def first_line(exc: BaseException) -> str:
    """An exception as one line (onnxruntime's messages run to many): its first, else its type."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def provider_name(p: str | tuple[str, dict]) -> str:
    return p if isinstance(p, str) else p[0]


def resolve_providers(device: str, require_cuda: bool, gpu_mem_limit_mb: int | None = None) -> list:
    """ONNX Runtime providers for ``device`` ("auto" | "cpu" | "cuda"); ``gpu_mem_limit_mb``: the
    CUDA arena limit per session (None or 0: no limit)."""
    if device not in ("auto", "cpu", "cuda"):
        raise EngineLoadError(f"device must be auto, cpu or cuda, got {device!r}")
    rt = ort()
    available = rt.get_available_providers()
    if device == "cpu":
        return [CPU]
    if CUDA in available:
        _preload_cuda_libraries(rt)
        return [cuda_provider(gpu_mem_limit_mb), CPU]
    if device == "cuda":
        msg = (
            f"CUDA asked for but onnxruntime {rt.__version__} has no CUDA provider "
            f"(available: {', '.join(available)}); install onnxruntime-gpu"
        )
        if require_cuda:
            raise EngineLoadError(msg)
        log.warning("%s; running on the CPU", msg)
    return [CPU]


def _preload_cuda_libraries(rt) -> None:
    """Load the CUDA/cuDNN libraries onnxruntime-gpu's CUDA provider links against before the
    first session: the ``gpu`` extra installs them as NVIDIA pip packages (onnxruntime-gpu[cuda,
    cudnn]), which the dynamic loader does not search by itself. onnxruntime >= 1.21 has
    ``preload_dlls`` for that; it falls back to the system's libraries (a CUDA base image, or torch's
    when torch was imported first). A failure here is not fatal: the session then logs why the CUDA
    provider did not load and runs on the CPU (or, with require_cuda, the load stops with a message)."""
    preload = getattr(rt, "preload_dlls", None)
    if preload is None:
        return
    try:
        preload()
    except Exception as exc:  # a missing library is reported by the session that needs it
        log.warning("onnxruntime.preload_dlls failed (%s); relying on the system's CUDA libraries", exc)


class Graph:
    """One InferenceSession plus its spec: feeds by name, checked interface, provider in use."""

    def __init__(
        self,
        role: str,
        path: Path,
        providers: Sequence,
        threads: int | None,
        batch_one: bool = False,
        spin: bool = False,
    ):
        rt = ort()
        so = session_options(threads, batch_one=batch_one, spin=spin)
        try:
            self.session = rt.InferenceSession(str(path), so, providers=list(providers))
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/... types
            raise EngineLoadError(
                f"{path}: onnxruntime cannot load the {role} graph: {first_line(exc)}"
            ) from None
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        self.spec = graphs.spec_for(role, [i.name for i in inputs], [o.name for o in outputs])
        problem = self.spec.mismatch(inputs, outputs)
        if problem:
            raise EngineLoadError(f"{path}: {problem}")
        self.role = role
        self.path = path
        self.provider = self.session.get_providers()[0]
        self.inputs = {i.name: i for i in inputs}
        self._output_names = self.spec.output_names
        self._shrink: Any = None  # run options that give the CPU arena back after the run
        if self.provider == CPU:
            self._shrink = rt.RunOptions()
            self._shrink.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")

    def run(self, *feeds: np.ndarray, shrink_arena: bool = False) -> list[np.ndarray]:
        """The session on ``feeds`` (in the spec's input order); ``shrink_arena``: the CPU arena
        returns the memory this run took beyond what it held before (for outsized inputs)."""
        options = self._shrink if shrink_arena else None
        return self.session.run(
            self._output_names, dict(zip(self.spec.input_names, feeds, strict=True)), options
        )

    def run_bound(self, *feeds: np.ndarray) -> list[np.ndarray]:
        """Same as :meth:`run` through I/O binding (CUDA: inputs copied once, outputs to the host)."""
        binding = self.session.io_binding()
        for name, value in zip(self.spec.input_names, feeds, strict=True):
            binding.bind_cpu_input(name, np.ascontiguousarray(value))
        for name in self._output_names:
            binding.bind_output(name, "cpu")
        self.session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()
