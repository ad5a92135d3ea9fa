"""What one running app holds (engine, voices, pools, metrics) and the request dependencies on it."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import anyio
from fastapi import Request

from service.catalog import VoiceCatalog
from service.errors import AUTHENTICATION, SERVER_ERROR, APIError
from service.metrics import Metrics
from service.scheduler import ModelPool
from service.settings import Settings
from service.types import MODEL_KINDS, EngineLoadError, ModelKind, SpeechEngine

log = logging.getLogger(__name__)

GPU_MAX_BATCH = 8


def resolve_max_batch(setting: int | None, student_provider: str) -> int:
    """The student batch limit: the setting when given, else batch on CUDA and not on CPU."""
    if setting is not None:
        return setting
    return GPU_MAX_BATCH if "CUDA" in student_provider else 1


EngineLoader = Callable[[Settings], SpeechEngine]


def default_engine_loader(settings: Settings) -> SpeechEngine:
    """``service.loading.load_engine`` on the configured voices folder and device."""
    try:
        from service.loading import load_engine
    except ImportError as exc:
        raise EngineLoadError(f"the inference engine cannot be imported ({exc})") from exc
    return load_engine(
        settings.voices_dir,
        device=settings.device,
        require_cuda=settings.require_cuda,
        **settings.engine_options(),
    )


class ServiceState:
    def __init__(self, settings: Settings, engine: SpeechEngine | None, loader: EngineLoader | None) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.engine = engine
        self.loader = loader or default_engine_loader
        self.catalog: VoiceCatalog | None = None
        self.pools: dict[ModelKind, ModelPool] = {}
        self.ready = False
        self.warmup_error: str | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._warmup_task: asyncio.Task | None = None

    async def start(self) -> None:
        s = self.settings
        if self.engine is None:
            self.engine = await anyio.to_thread.run_sync(self.loader, s)
        engine = self.engine
        self.catalog = VoiceCatalog(engine.voices, s.default_voice, s.voice_aliases)
        for v in engine.voices:
            log.info("voice %s: %d Hz, speakers %s, models %s", v.name, v.sample_rate, v.speakers, v.models)
        for model, provider in engine.providers.items():
            log.info("%s runs on %s", model, provider)
        self._executor = ThreadPoolExecutor(
            max_workers=s.student_workers + s.reference_max_concurrent, thread_name_prefix="parawave-infer"
        )
        self.pools = {
            "student": ModelPool(
                "student",
                engine,
                self._executor,
                self.metrics,
                queue_size=s.student_queue_size,
                workers=s.student_workers,
                max_batch=resolve_max_batch(s.max_batch, engine.providers.get("student", "")),
                max_delay_s=s.max_batch_delay_ms / 1000.0,
                timeout_s=s.request_timeout_s,
            ),
            "teacher": ModelPool(
                "teacher",
                engine,
                self._executor,
                self.metrics,
                queue_size=s.teacher_queue_size,
                workers=s.reference_max_concurrent,
                timeout_s=s.reference_timeout_s,
            ),
        }
        for kind in MODEL_KINDS:
            self.pools[kind].start()
        self._warmup_task = asyncio.create_task(self._warmup())

    async def _warmup(self) -> None:
        assert self.engine is not None
        try:
            await anyio.to_thread.run_sync(self.engine.warmup)
        except Exception as exc:
            self.warmup_error = f"{type(exc).__name__}: {exc}"
            log.error("warm-up failed; the service stays not ready", exc_info=exc)
            return
        self.ready = True
        self.metrics.ready.set(1)
        log.info("warmed up: ready")

    async def stop(self) -> None:
        self.ready = False
        self.metrics.ready.set(0)
        for pool in self.pools.values():
            await pool.stop()
        if self._executor is not None:
            await anyio.to_thread.run_sync(lambda: self._executor.shutdown(wait=True, cancel_futures=True))
        if self._warmup_task is not None and not self._warmup_task.done():
            self._warmup_task.cancel()


def get_state(request: Request) -> ServiceState:
    return request.app.state.parawave


def require_api_key(request: Request) -> None:
    """With ``settings.api_key`` set, requests need ``Authorization: Bearer <key>``."""
    key = get_state(request).settings.api_key
    if key is None:
        return
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise APIError(
            401,
            "You didn't provide an API key: send 'Authorization: Bearer <key>'.",
            type=AUTHENTICATION,
            code="missing_api_key",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not secrets.compare_digest(token.strip().encode(), key.get_secret_value().encode()):
        raise APIError(
            401,
            "Incorrect API key provided.",
            type=AUTHENTICATION,
            code="invalid_api_key",
            headers={"WWW-Authenticate": "Bearer"},
        )


def require_ready(request: Request) -> ServiceState:
    state = get_state(request)
    if not state.ready:
        state.metrics.rejected.labels("any", "not_ready").inc()
        raise APIError(
            503,
            "The service is not ready yet (loading or warming up voices); retry shortly.",
            type=SERVER_ERROR,
            code="not_ready",
            headers={"Retry-After": str(state.settings.retry_after_s)},
        )
    return state
