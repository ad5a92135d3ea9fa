"""Concurrency sweep against a running parawave server: a bounded async httpx client.

    python -m service.loadtest.sweep --url http://127.0.0.1:8000 --concurrency 1,2,4,8,16 \\
        --duration 20 --out reports/cpu

For each concurrency level C it keeps exactly C requests in flight (a semaphore of C slots; each
finished request frees its slot for the next) for ``--warmup`` + ``--duration`` seconds, over texts
drawn at random (seeded) from :mod:`service.loadtest.sentences`. Only requests *started* inside the
``--duration`` window are counted. Per request it measures the time to the first audio byte (the
response is read as it streams; wav headers do not count as audio), the full latency, the audio
seconds received (counted from the wav/pcm bytes) and the status. Per level it reports requests/s,
time to first audio and latency p50/p95/p99, the real-time multiple (audio seconds produced per
wall-clock second, all requests together) and errors by status.

A 429/503 answer (queue full, not ready) holds its slot for the server's Retry-After before the
next request (``--no-retry-after`` retries at once). ``--stop-when-ttfa-p95-ms 250`` ends the sweep
after the first level whose p95 time to first audio passes the bound (or that had no success).

Writes ``report.json`` (config, server models and providers, hardware, levels), ``report.md``
(a table), ``report.png`` (latency and throughput vs concurrency) and ``requests.jsonl`` (one line
per request) into ``--out``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import resource
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import typer

from service.loadtest import hardware
from service.loadtest.meter import AudioMeter
from service.loadtest.sentences import SENTENCES, SHORT_SENTENCES

log = logging.getLogger(__name__)

ENDPOINTS = {"speech": "/v1/audio/speech", "reference": "/v1/audio/speech/reference"}
RETRY_STATUSES = (429, 503)
MAX_RETRY_AFTER_S = 30.0


class SweepError(RuntimeError):
    """The sweep cannot run (server unreachable, not ready, rejects the request): one line."""


@dataclass(frozen=True)
class SweepConfig:
    url: str
    concurrency: tuple[int, ...] = (1, 2, 4, 8, 16)
    duration_s: float = 20.0  # measured window per level
    warmup_s: float = 1.0  # per level, before the window (requests started then are not counted)
    endpoint: Literal["speech", "reference"] = "speech"
    model: str | None = None  # body "model"; None = the endpoint's default (tts-1)
    voice: str | None = None
    response_format: Literal["wav", "pcm"] = "wav"
    stream: bool = True
    speed: float = 1.0
    api_key: str | None = field(default=None, repr=False)
    timeout_s: float = 120.0  # per request
    seed: int = 0
    respect_retry_after: bool = True
    stop_when_ttfa_p95_ms: float | None = None
    max_requests_per_level: int | None = None

    @property
    def texts(self) -> tuple[str, ...]:
        return SHORT_SENTENCES if self.endpoint == "reference" else SENTENCES

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["concurrency"] = list(self.concurrency)
        d["api_key"] = "***" if self.api_key else None
        d["path"] = ENDPOINTS[self.endpoint]
        return d


@dataclass(frozen=True)
class RequestRecord:
    concurrency: int
    text_id: int  # index into the endpoint's text list
    start_s: float  # from the start of the level's window
    latency_s: float  # request sent -> last byte (or the error)
    ttfa_s: float | None  # request sent -> first audio byte
    audio_s: float  # audio received
    status: int | None  # HTTP status; None when there was no response
    error: str | None  # None = success; else the HTTP status, "timeout", an exception name, "no_audio"
    bytes: int

    @property
    def ok(self) -> bool:
        return self.error is None


def percentiles(values: list[float], qs: tuple[int, ...] = (50, 95, 99)) -> dict[str, float | None]:
    """{"p50": ..., ...} in milliseconds (linear interpolation); None when there are no values."""
    import numpy as np

    if not values:
        return {f"p{q}": None for q in qs}
    arr = np.asarray(values, dtype=np.float64) * 1000.0
    return {f"p{q}": round(float(np.percentile(arr, q)), 2) for q in qs}


def summarize(concurrency: int, records: list[RequestRecord], wall_s: float, client_cpu_s: float) -> dict:
    ok = [r for r in records if r.ok]
    errors: dict[str, int] = {}
    for r in records:
        if r.error is not None:
            errors[r.error] = errors.get(r.error, 0) + 1
    audio = sum(r.audio_s for r in ok)
    return {
        "concurrency": concurrency,
        "requests": len(records),
        "ok": len(ok),
        "errors": dict(sorted(errors.items())),
        "wall_s": round(wall_s, 3),
        "requests_per_s": round(len(ok) / wall_s, 3) if wall_s > 0 else 0.0,
        "ttfa_ms": percentiles([r.ttfa_s for r in ok if r.ttfa_s is not None]),
        "latency_ms": percentiles([r.latency_s for r in ok]),
        "audio_s": round(audio, 3),
        "audio_s_per_request": round(audio / len(ok), 3) if ok else None,
        "rt_multiple": round(audio / wall_s, 3) if wall_s > 0 else 0.0,
        "client_cpu_s": round(client_cpu_s, 3),
    }


class Sweeper:
    def __init__(self, config: SweepConfig, transport: Any = None) -> None:
        self.config = config
        self.path = ENDPOINTS[config.endpoint]
        self._transport = transport  # tests may pass an httpx transport
        self._rng = random.Random(config.seed)

    def _client(self, connections: int):
        import httpx

        headers = {"Authorization": f"Bearer {self.config.api_key}"} if self.config.api_key else {}
        return httpx.AsyncClient(
            base_url=self.config.url.rstrip("/"),
            headers=headers,
            timeout=httpx.Timeout(self.config.timeout_s, connect=10.0),
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
            transport=self._transport,
        )

    def _body(self, text: str) -> dict[str, Any]:
        c = self.config
        body: dict[str, Any] = {
            "input": text,
            "response_format": c.response_format,
            "stream": c.stream,
            "speed": c.speed,
        }
        if c.model:
            body["model"] = c.model
        if c.voice:
            body["voice"] = c.voice
        return body

    # --- one request -------------------------------------------------------------------------
    async def request(
        self, client, text_id: int, concurrency: int, t_window: float
    ) -> tuple[RequestRecord, float]:
        """One request, read as it streams. Returns its record and the Retry-After to honour (s)."""
        import httpx

        text = self.config.texts[text_id]
        ttfa = None
        status = None
        error = None
        retry_after = 0.0
        meter: AudioMeter | None = None
        received = 0
        t0 = time.perf_counter()
        try:
            async with client.stream("POST", self.path, json=self._body(text)) as response:
                status = response.status_code
                if status != 200:
                    received = len(await response.aread())
                    error = str(status)
                    if status in RETRY_STATUSES:
                        retry_after = _retry_after(response.headers.get("retry-after"))
                else:
                    rate = response.headers.get("x-sample-rate")
                    meter = AudioMeter(self.config.response_format, int(rate) if rate else None)
                    async for piece in response.aiter_raw():
                        if meter.feed(piece) and ttfa is None:
                            ttfa = time.perf_counter() - t0
                    received = meter.total_bytes
                    if meter.audio_bytes == 0:
                        error = "no_audio"
        except httpx.TimeoutException:
            error = "timeout"
        except (httpx.HTTPError, ValueError) as exc:  # transport errors, cut streams, bad wav
            error = type(exc).__name__
        t1 = time.perf_counter()
        record = RequestRecord(
            concurrency=concurrency,
            text_id=text_id,
            start_s=round(t0 - t_window, 6),
            latency_s=t1 - t0,
            ttfa_s=ttfa,
            audio_s=meter.audio_seconds if meter is not None else 0.0,
            status=status,
            error=error,
            bytes=received,
        )
        return record, retry_after

    # --- one level ---------------------------------------------------------------------------
    async def run_level(self, concurrency: int) -> tuple[dict, list[RequestRecord]]:
        c = self.config
        slots = asyncio.Semaphore(concurrency)
        records: list[RequestRecord] = []
        tasks: set[asyncio.Task] = set()
        cpu0 = _cpu_seconds()
        async with self._client(concurrency) as client:
            level_start = time.perf_counter()
            window = level_start + c.warmup_s
            stop_at = window + c.duration_s
            counted = 0

            async def run_one(text_id: int) -> None:
                try:
                    record, retry_after = await self.request(client, text_id, concurrency, window)
                    if record.start_s >= 0:
                        records.append(record)
                    if retry_after and c.respect_retry_after:  # back off like a polite client, in the slot
                        await asyncio.sleep(max(0.0, min(retry_after, stop_at - time.perf_counter())))
                finally:
                    slots.release()

            while True:
                await slots.acquire()
                now = time.perf_counter()
                if now >= stop_at or (
                    c.max_requests_per_level is not None and counted >= c.max_requests_per_level
                ):
                    slots.release()
                    break
                counted += now >= window
                task = asyncio.create_task(run_one(self._rng.randrange(len(c.texts))))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            if tasks:
                await asyncio.gather(*tasks)
        ends = [window + r.start_s + r.latency_s for r in records]
        wall = (max(ends) - window) if ends else c.duration_s
        summary = summarize(concurrency, records, wall, _cpu_seconds() - cpu0)
        return summary, sorted(records, key=lambda r: r.start_s)

    # --- the whole sweep ---------------------------------------------------------------------
    async def preflight(self) -> dict[str, Any]:
        """The server's models/providers, after checking it is ready and answers one request."""
        import httpx

        async with self._client(2) as client:
            try:
                ready = await client.get("/health/ready")
            except httpx.HTTPError as exc:
                raise SweepError(f"cannot reach {self.config.url}: {type(exc).__name__}: {exc}") from exc
            if ready.status_code != 200:
                raise SweepError(f"{self.config.url} is not ready (GET /health/ready: {ready.status_code})")
            models = await client.get("/v1/models")
            if models.status_code != 200:
                raise SweepError(f"GET /v1/models answered {models.status_code}: {_message(models)}")
            record, _ = await self.request(client, 0, 0, time.perf_counter())
            if not record.ok:
                raise SweepError(f"a test request to {self.path} failed: {record.error}")
        data = models.json().get("data", [])
        kind = (
            "teacher"
            if self.config.endpoint == "reference" or self.config.model in _TEACHER_ALIASES
            else "student"
        )
        providers = {m.get("kind", m.get("id")): m.get("provider", "unknown") for m in data}
        health = ready.json()
        return {
            "url": self.config.url,
            "model": kind,
            "provider": providers.get(kind, "unknown"),
            "providers": providers,
            "models": [{k: m.get(k) for k in ("id", "kind", "provider", "version")} for m in data],
            "voices": health.get("voices"),
        }

    async def run(self, on_level=None) -> tuple[dict[str, Any], list[RequestRecord]]:
        c = self.config
        started = datetime.now(UTC)
        server = await self.preflight()
        levels: list[dict] = []
        all_records: list[RequestRecord] = []
        stopped = None
        for concurrency in c.concurrency:
            summary, records = await self.run_level(concurrency)
            levels.append(summary)
            all_records.extend(records)
            if on_level is not None:
                on_level(summary)
            if c.stop_when_ttfa_p95_ms is not None:
                p95 = summary["ttfa_ms"]["p95"]
                if p95 is None:
                    stopped = {"at_concurrency": concurrency, "reason": "no successful request"}
                elif p95 > c.stop_when_ttfa_p95_ms:
                    stopped = {
                        "at_concurrency": concurrency,
                        "reason": f"p95 time to first audio {p95:.1f} ms > {c.stop_when_ttfa_p95_ms:g} ms",
                    }
                if stopped is not None:
                    break
        report = {
            "tool": "parawave-loadtest-sweep",
            "started_at": started.isoformat(timespec="seconds"),
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "config": c.to_dict(),
            "texts": len(c.texts),
            "server": server,
            "hardware": hardware.describe(),
            "levels": levels,
            "stopped": stopped,
        }
        return report, all_records


_TEACHER_ALIASES = frozenset({"tts-1-hd", "parawave-teacher", "teacher"})


def _retry_after(value: str | None) -> float:
    try:
        seconds = float(value) if value is not None else 1.0
    except ValueError:
        seconds = 1.0
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S) if math.isfinite(seconds) else 1.0


def _message(response) -> str:
    try:
        return str(response.json()["error"]["message"])[:200]
    except (ValueError, KeyError, TypeError):
        return response.text[:200]


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def write_requests(records: list[RequestRecord], path: Path) -> None:
    with path.open("w") as f:
        for r in records:
            f.write(json.dumps(asdict(r)) + "\n")


def parse_levels(text: str) -> tuple[int, ...]:
    try:
        levels = tuple(int(x) for x in text.replace(" ", "").split(",") if x)
    except ValueError:
        raise typer.BadParameter(f"expected a comma-separated list of integers, got {text!r}") from None
    if not levels or any(n < 1 for n in levels):
        raise typer.BadParameter(f"concurrency levels must be integers >= 1, got {text!r}")
    return levels


app = typer.Typer(add_completion=False, help=__doc__.split("\n\n")[0] if __doc__ else None)


@app.command()
def main(
    url: str = typer.Option("http://127.0.0.1:8000", help="Base URL of the server (or of the proxy)."),
    concurrency: str = typer.Option("1,2,4,8,16", help="Comma-separated concurrency levels, in order."),
    duration: float = typer.Option(20.0, min=0.1, help="Measured seconds per level."),
    warmup: float = typer.Option(1.0, min=0.0, help="Unmeasured seconds per level before the window."),
    out: Path = typer.Option(
        Path("loadtest-report"), help="Folder for report.json/.md/.png + requests.jsonl."
    ),
    endpoint: str = typer.Option("speech", help="speech (student) | reference (teacher)."),
    model: str | None = typer.Option(None, help="Body 'model' (default: the endpoint's default, tts-1)."),
    voice: str | None = typer.Option(None, help="Body 'voice' (default: the server's default voice)."),
    response_format: str = typer.Option(
        "wav", "--format", help="wav | pcm (both decodable for audio length)."
    ),
    stream: bool = typer.Option(True, "--stream/--no-stream", help="Ask for a chunked (streamed) response."),
    speed: float = typer.Option(1.0, min=0.25, max=4.0),
    api_key: str | None = typer.Option(
        None, envvar="PARAWAVE_API_KEY", help="Bearer key if the server has one."
    ),
    timeout: float = typer.Option(120.0, min=0.1, help="Per-request timeout (s)."),
    seed: int = typer.Option(0, help="Seed of the text choice."),
    retry_after: bool = typer.Option(
        True, "--retry-after/--no-retry-after", help="Honour Retry-After on 429/503."
    ),
    stop_when_ttfa_p95_ms: float | None = typer.Option(
        None, help="Stop after the first level whose p95 time to first audio exceeds this (ms)."
    ),
    max_requests: int | None = typer.Option(
        None, min=1, help="At most this many measured requests per level."
    ),
) -> None:
    """Sweep concurrency levels against a parawave server and write a JSON + markdown + PNG report."""
    from service.loadtest import report as report_mod

    if endpoint not in ENDPOINTS:
        typer.echo(f"error: --endpoint must be one of {', '.join(ENDPOINTS)}, got {endpoint!r}", err=True)
        raise typer.Exit(2)
    if response_format not in ("wav", "pcm"):
        typer.echo(f"error: --format must be wav or pcm, got {response_format!r}", err=True)
        raise typer.Exit(2)
    try:
        levels = parse_levels(concurrency)
    except typer.BadParameter as exc:
        typer.echo(f"error: --concurrency: {exc}", err=True)
        raise typer.Exit(2) from None
    config = SweepConfig(
        url=url,
        concurrency=levels,
        duration_s=duration,
        warmup_s=warmup,
        endpoint=endpoint,  # type: ignore[arg-type]
        model=model,
        voice=voice,
        response_format=response_format,  # type: ignore[arg-type]
        stream=stream,
        speed=speed,
        api_key=api_key,
        timeout_s=timeout,
        seed=seed,
        respect_retry_after=retry_after,
        stop_when_ttfa_p95_ms=stop_when_ttfa_p95_ms,
        max_requests_per_level=max_requests,
    )

    def show(level: dict) -> None:
        typer.echo(report_mod.level_line(level), err=True)

    try:
        report, records = asyncio.run(Sweeper(config).run(on_level=show))
    except SweepError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    paths = report_mod.write_report(report, out)
    write_requests(records, out / "requests.jsonl")
    if report["stopped"]:
        typer.echo(
            f"stopped at concurrency {report['stopped']['at_concurrency']}: {report['stopped']['reason']}",
            err=True,
        )
    typer.echo(report_mod.render_markdown(report))
    typer.echo("wrote " + ", ".join(str(p) for p in [*paths.values(), out / "requests.jsonl"]), err=True)


if __name__ == "__main__":
    app()
