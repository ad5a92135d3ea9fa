"""Loading voices (torch-free): where the bundles are (:func:`bundle_dirs`, :func:`find_bundle`),
one voice with its CUDA check (:func:`load_voice`), every voice of a folder as an engine
(:func:`load_engine`). The server (``service.state.default_engine_loader``), the CLI
(``parawave say``/``bench``/``serve``) and evaluation all load through here.

Knobs (keyword arguments; the service takes them from ``service.settings.Settings``, that is
``PARAWAVE_<NAME>`` or ``.env``, see ``Settings.engine_options()``): ``student_threads`` (parallel
student pieces on the CPU, ``service.voice``), ``intra_op_threads`` (CPU threads per session;
default 1, ``service.sessions.DEFAULT_INTRA_OP_THREADS``; 0 = ONNX Runtime's choice, one per
physical core), ``ort_spin`` (let idle ORT threads spin: lower latency on a dedicated machine,
wasted cores on a shared one; default off), ``gpu_mem_limit_mb`` (CUDA arena limit per session,
default no limit), ``teacher_frames_per_call`` (``service.teacher``; default calibrated from the
measured speed), ``teacher_temperature`` (default the bundle's ``inference.teacher_temperature``),
``lexicon`` / ``voice_lexicons`` (pronunciation lexicons, server-wide and per voice).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from service import bundle as bundle_io
from service.engine import OnnxEngine
from service.sessions import CPU, CUDA, DEFAULT_INTRA_OP_THREADS, first_line, provider_name, resolve_providers
from service.types import EngineLoadError
from service.voice import Voice

log = logging.getLogger(__name__)


def bundle_dirs(voices_dir: Path) -> list[Path]:
    """The voice bundles under ``voices_dir`` (``<name>/voice.json``), sorted by name."""
    return sorted(p.parent for p in Path(voices_dir).glob(f"*/{bundle_io.MANIFEST}"))


def find_bundle(voice: str, voices_dir: Path) -> Path:
    """``voices_dir/<voice>`` (or ``voice`` itself when it is a bundle folder); EngineLoadError
    naming the voices there when neither is."""
    for cand in (Path(voices_dir) / voice, Path(voice)):
        if (cand / bundle_io.MANIFEST).is_file():
            return cand
    have = [p.name for p in bundle_dirs(voices_dir)]
    raise EngineLoadError(f"no voice {voice!r} in {voices_dir} (voices: {', '.join(have) or 'none'})")


def load_voice(
    path: Path, providers: list, intra_op_threads: int | None, require_cuda: bool, **knobs: Any
) -> Voice:
    """A voice on ``providers``; on CUDA it must also run one short utterance, else (unless CUDA is
    required) it is loaded again on the CPU: a GPU whose kernels fail at run time must not turn every
    request into a server error. ``knobs``: more keyword arguments of :meth:`Voice.load`."""
    voice = Voice.load(path, providers, intra_op_threads=intra_op_threads, **knobs)
    on_cuda = any(g.provider == CUDA for g in voice.graphs.values())
    if not on_cuda:
        return voice
    try:
        voice.smoke_test()
    except Exception as exc:  # onnxruntime raises its own types; any failure means "not usable here"
        first = first_line(exc)
        if require_cuda:
            raise EngineLoadError(f"{path}: a test run on CUDA failed: {first}") from None
        log.warning("voice %s: a test run on CUDA failed (%s); running it on the CPU", voice.name, first)
        voice = Voice.load(path, [CPU], intra_op_threads=intra_op_threads, **knobs)
    return voice


def open_voice(
    path: Path,
    *,
    device: str = "auto",
    require_cuda: bool = False,
    intra_op_threads: int | None = None,
    gpu_mem_limit_mb: int | None = None,
    **knobs: Any,
) -> Voice:
    """One bundle folder on ``device`` ("auto" | "cpu" | "cuda"), as :func:`load_engine` loads each
    of its voices (``knobs``: ``student_threads``, ``ort_spin``, ... of :meth:`Voice.load`)."""
    providers = resolve_providers(device, require_cuda, gpu_mem_limit_mb)
    if intra_op_threads is None:
        intra_op_threads = DEFAULT_INTRA_OP_THREADS
    return load_voice(Path(path), providers, intra_op_threads, require_cuda, **knobs)


def load_engine(
    voices_dir: Path,
    *,
    device: str = "auto",
    require_cuda: bool = False,
    intra_op_threads: int | None = None,
    max_batch: int = 8,
    student_threads: int | None = None,
    ort_spin: bool = False,
    gpu_mem_limit_mb: int | None = None,
    teacher_frames_per_call: int | None = None,
    teacher_temperature: float | None = None,
    lexicon: Path | None = None,
    voice_lexicons: Mapping[str, Path] | None = None,
) -> OnnxEngine:
    """Load every bundle under ``voices_dir``; EngineLoadError (one line) when it cannot.

    The knobs (``intra_op_threads`` .. ``voice_lexicons``, see the module's docstring) are the
    ``Settings`` fields of the same names (``Settings.engine_options()``)."""
    voices_dir = Path(voices_dir)
    dirs = bundle_dirs(voices_dir)
    if not dirs:
        raise EngineLoadError(f"no voice bundle in {voices_dir} (expected <name>/{bundle_io.MANIFEST})")
    providers = resolve_providers(device, require_cuda, gpu_mem_limit_mb)
    if intra_op_threads is None:
        intra_op_threads = DEFAULT_INTRA_OP_THREADS
    knobs = {
        "student_threads": student_threads,
        "ort_spin": ort_spin,
        "teacher_frames_per_call": teacher_frames_per_call,
        "teacher_temperature": teacher_temperature,
        "lexicon": lexicon,
        "voice_lexicons": voice_lexicons,
    }
    voices = [load_voice(d, providers, intra_op_threads, require_cuda, **knobs) for d in dirs]
    unknown = sorted(set(voice_lexicons or {}) - {v.name for v in voices})
    if unknown:
        raise EngineLoadError(
            f"voice_lexicons names {', '.join(unknown)}, not a loaded voice ({', '.join(v.name for v in voices)})"
        )
    if provider_name(providers[0]) == CUDA and require_cuda:
        for v in voices:
            for role in ("acoustic", "student"):
                g = v.graphs.get(role)
                if g is not None and g.provider != CUDA:
                    raise EngineLoadError(
                        f"{v.path}: the {role} graph fell back to {g.provider} (the CUDA provider failed to load; "
                        "check the CUDA/cuDNN libraries onnxruntime-gpu needs)"
                    )
    engine = OnnxEngine(voices, max_batch=max_batch)
    log.info(
        "engine: %d voice(s) %s; providers %s", len(voices), [v.name for v in voices], dict(engine.providers)
    )
    return engine
