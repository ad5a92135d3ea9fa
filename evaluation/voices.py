"""Voice bundles for evaluation, found and loaded through the service's own loader (what is
measured is what is served). Every use of the service's loading code by ``evaluation`` is here."""

from __future__ import annotations

from pathlib import Path

from evaluation.errors import EvalError


def find_bundle(voice: str | None, voices_dir: Path) -> Path:
    """``voices_dir/<voice>`` (or ``voice`` itself when it is a bundle folder); ``None``: the first
    bundle of ``voices_dir``, in the service's order."""
    from service.engine import bundle_dirs

    have = bundle_dirs(voices_dir)
    if voice is None:
        if not have:
            raise EvalError(f"no voice bundle in {voices_dir}")
        return have[0]
    for cand in (voices_dir / voice, Path(voice)):
        if (cand / "voice.json").is_file():
            return cand
    names = ", ".join(p.name for p in have) or "none"
    raise EvalError(f"no voice {voice!r} in {voices_dir} (voices: {names})")


def load_voice(path: Path, device: str):
    """(engine, voice) for one bundle; EvalError on a broken bundle."""
    from service.engine import DEFAULT_INTRA_OP_THREADS, OnnxEngine, Voice, resolve_providers
    from service.settings import get_settings
    from service.types import EngineLoadError

    knobs = get_settings()  # the engine knobs of PARAWAVE_* / .env, as the service would use them
    try:
        voice = Voice.load(
            path,
            resolve_providers(device, False, knobs.gpu_mem_limit_mb),
            intra_op_threads=DEFAULT_INTRA_OP_THREADS,
            student_threads=knobs.student_threads,
            ort_spin=knobs.ort_spin,
        )
    except EngineLoadError as exc:
        raise EvalError(f"cannot load voice {path}: {exc}") from None
    return OnnxEngine([voice], max_batch=1), voice
