"""Prometheus metrics (one registry per app, so several apps can live in one process, e.g. in tests)."""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.allocator import heap_stats

_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
_RTF = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 50.0, 100.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "parawave_requests",
            "HTTP requests by route, method and status.",
            ["route", "method", "status"],
            registry=r,
        )
        self.queue_depth = Gauge(
            "parawave_queue_depth", "Requests waiting for a worker.", ["model"], registry=r
        )
        self.in_flight = Gauge(
            "parawave_in_flight", "Requests admitted and not finished.", ["model"], registry=r
        )
        self.queue_seconds = Histogram(
            "parawave_queue_seconds",
            "Admission to start of inference.",
            ["model"],
            buckets=_LATENCY,
            registry=r,
        )
        self.inference_seconds = Histogram(
            "parawave_inference_seconds",
            "Start of inference to the request's last chunk.",
            ["model"],
            buckets=_LATENCY,
            registry=r,
        )
        self.time_to_first_audio = Histogram(
            "parawave_time_to_first_audio_seconds",
            "Admission to the first audio chunk ready.",
            ["model"],
            buckets=_LATENCY,
            registry=r,
        )
        self.rtf = Histogram(
            "parawave_real_time_factor",
            "Inference seconds per second of audio, per request.",
            ["model"],
            buckets=_RTF,
            registry=r,
        )
        self.audio_seconds = Counter(
            "parawave_audio_seconds", "Seconds of audio produced.", ["model"], registry=r
        )
        self.batch_size = Histogram(
            "parawave_batch_size",
            "Requests per engine call.",
            ["model"],
            buckets=(1, 2, 4, 8, 16, 32, 64),
            registry=r,
        )
        self.rejected = Counter(
            "parawave_rejected",
            "Requests turned away (queue full, not ready).",
            ["model", "reason"],
            registry=r,
        )
        self.cancelled = Counter(
            "parawave_cancelled", "Generations stopped early.", ["model", "reason"], registry=r
        )
        self.ready = Gauge("parawave_ready", "1 once voices are loaded and warmed up.", registry=r)
        # The Wyoming server (service/wyoming.py); its syntheses also count in the per-model metrics above.
        self.wyoming_requests = Counter(
            "parawave_wyoming_requests",
            "Wyoming syntheses by mode (synthesize | stream) and outcome (ok, client_gone or the error code).",
            ["mode", "outcome"],
            registry=r,
        )
        self.wyoming_connections = Gauge(
            "parawave_wyoming_connections", "Open Wyoming connections.", registry=r
        )
        self.wyoming_first_audio = Histogram(
            "parawave_wyoming_time_to_first_audio_seconds",
            "Wyoming synthesize (or synthesize-start) event to its first audio-chunk written.",
            ["mode"],
            buckets=_LATENCY,
            registry=r,
        )
        self.malloc_bytes = Gauge(
            "parawave_malloc_bytes",
            "The process's C heap as glibc sees it (mallinfo2; absent elsewhere): in_use, free (kept in "
            "the arenas: fragmentation), mmapped (large blocks).",
            ["kind"],
            registry=r,
        )

    def update_heap(self) -> None:
        """Read the C heap's statistics into ``parawave_malloc_bytes`` (at scrape time)."""
        stats = heap_stats()
        if stats is not None:
            for kind in ("in_use", "free", "mmapped"):
                self.malloc_bytes.labels(kind).set(getattr(stats, kind))


class RequestMetricsMiddleware:
    """Counts every HTTP request by route template (not raw path: bounded label values) and status."""

    def __init__(self, app: ASGIApp, metrics: Metrics, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")  # set by the router when it matched
            label = getattr(route, "path", None) or next(
                (r.path for r in self.routes if r.matches(scope)[0] is not Match.NONE),  # type: ignore[attr-defined]
                "unmatched",
            )
            self.metrics.requests.labels(label, scope.get("method", ""), str(status)).inc()
