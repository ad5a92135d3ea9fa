"""Voice bundles for evaluation, found and loaded through the service's own loader (what is
measured is what is served). Every use of the service's loading code by ``evaluation`` is here."""

from __future__ import annotations

from pathlib import Path

from evaluation.errors import EvalError


def find_bundle(voice: str | None, voices_dir: Path) -> Path:
    """``voices_dir/<voice>`` (or ``voice`` itself when it is a bundle folder); ``None``: the first
    bundle of ``voices_dir``, in the service's order."""
    from service.loading import bundle_dirs
    from service.loading import find_bundle as find
    from service.types import EngineLoadError

    if voice is None:
        have = bundle_dirs(voices_dir)
        if not have:
            raise EvalError(f"no voice bundle in {voices_dir}")
        return have[0]
    try:
        return find(voice, voices_dir)
    except EngineLoadError as exc:
        raise EvalError(str(exc)) from None


def load_voice(path: Path, device: str):
    """(engine, voice) for one bundle; EvalError on a broken bundle."""
    from service.engine import OnnxEngine
    from service.loading import open_voice
    from service.settings import get_settings
    from service.types import EngineLoadError

    knobs = get_settings()  # the engine knobs of PARAWAVE_* / .env, as the service would use them
    try:
        voice = open_voice(
            path,
            device=device,
            gpu_mem_limit_mb=knobs.gpu_mem_limit_mb,
            student_threads=knobs.student_threads,
            ort_spin=knobs.ort_spin,
        )
    except EngineLoadError as exc:
        raise EvalError(f"cannot load voice {path}: {exc}") from None
    return OnnxEngine([voice], max_batch=1), voice
