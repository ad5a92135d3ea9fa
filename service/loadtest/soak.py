"""Chaos soak against a parawave server: does its memory stay flat under abandoned streams, mixed
formats and bad input?

    parawave soak --serve --requests 5000 --concurrency 24 --seed 0 --out recipes/reports/memory-soak/run
    parawave soak --url http://127.0.0.1:8000 --pid 1234 --requests 960      # a server already running
    parawave soak --url http://127.0.0.1:8000 --container parawave-cpu       # one in a container

Loopback only (``--url`` must name 127.0.0.1, ::1 or localhost) and bounded by ``--requests`` and
``--duration``, whichever comes first. The requests go in waves of ``--concurrency``, all of a wave
at once; each request is drawn from a seeded RNG (same seed, same plan): a model (``tts-1``,
``tts-1-hd``), a voice, a response format (mp3, opus, aac, flac, wav, pcm), one to three sentences,
and how it is read: whole, streamed (chunked) or as Server-Sent Events; a share of the streamed ones is
abandoned by the client at a random byte (0 = right after the headers); another share is a malformed
request (bad JSON, wrong types, unknown voice/model/format, too long, not JSON, too large, ...).

After each wave it waits (up to ``--settle``) for the server's in-flight gauge (``parawave_in_flight``
in ``/metrics``) to come back to 0 and then records the server's resident memory: ``VmRSS`` of
``--pid`` (``/proc/<pid>/status``), or for ``--container`` the container's main process and its
cgroup's ``memory.current``. ``GET /health/ready`` is polled while every wave runs. The verdict: no
5xx, every malformed request a 4xx in the OpenAI error envelope, ready throughout, in flight back to
0 after every wave, and RSS after the warm-up waves growing less than ``--max-growth`` percent.

``--serve`` starts ``python -m service.cli serve`` itself on a free loopback port (``--server-env
KEY=VALUE`` adds to its environment, e.g. ``PARAWAVE_STUDENT_THREADS=1`` or ``MALLOC_ARENA_MAX=8``),
which is how the per-factor runs of ``recipes/reports/memory-soak`` were made: ``--formats``,
``--models``, ``--stream-fraction``, ``--abort-fraction``, ``--sse-fraction`` and
``--malformed-fraction`` narrow the mix to one factor at a time.

Writes ``waves.tsv`` (one row per wave), ``soak.json`` (config, summary, waves), ``README.md`` (a
table and the verdict) and ``rss.png`` (RSS per wave; needs matplotlib, the ``load`` extra) into
``--out``.

Here: the soak itself (one request, the waves, the probes) and the command; the config and the plan
are in ``soak_plan.py``, the verdict and the report in ``soak_report.py``, the server's memory and a
server of its own in ``soak_server.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import typer

from service.loadtest import hardware
from service.loadtest.soak_plan import (
    EXPECTED_STATUS,
    FORMATS,
    MODELS,
    VOICES,
    Mode,
    Planned,
    SoakConfig,
    plan_wave,
)
from service.loadtest.soak_report import render_markdown, summarize, wave_line, write_report
from service.loadtest.soak_server import MemorySource, ServedProcess, SoakError

log = logging.getLogger(__name__)

LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})
ENVELOPE_KEYS = frozenset({"message", "type", "param", "code"})
SPEECH = "/v1/audio/speech"


@dataclass(frozen=True)
class Outcome:
    index: int
    mode: Mode
    what: str
    status: int | None  # None: no response (transport error)
    bytes: int
    aborted: bool  # the client closed the connection early, as planned
    problem: str | None  # None = as expected


# ------------------------------------------------------------------------------------ the soak


def parse_in_flight(metrics_text: str) -> float:
    """The sum of ``parawave_in_flight`` over its labels in a Prometheus text exposition."""
    total = 0.0
    for line in metrics_text.splitlines():
        if line.startswith("parawave_in_flight{") or line.startswith("parawave_in_flight "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def parse_heap(metrics_text: str) -> dict[str, float]:
    """``parawave_malloc_bytes`` by kind (in_use, free, mmapped) in MiB; {} off glibc."""
    out = {}
    for line in metrics_text.splitlines():
        if line.startswith('parawave_malloc_bytes{kind="'):
            kind = line.split('"', 2)[1]
            out[kind] = round(float(line.rsplit(" ", 1)[1]) / (1 << 20), 1)
    return out


def check_envelope(status: int, content: bytes) -> str | None:
    """None when ``content`` is OpenAI's error envelope, else what is wrong with it."""
    try:
        err = json.loads(content)["error"]
    except (ValueError, KeyError, TypeError):
        return f"{status} without the error envelope: {content[:80]!r}"
    if not isinstance(err, dict) or not set(err) >= ENVELOPE_KEYS or not err.get("message"):
        return f"{status} with an incomplete error envelope: {err!r}"[:200]
    return None


class Soaker:
    def __init__(self, config: SoakConfig, memory: MemorySource) -> None:
        host = urlsplit(config.url).hostname or ""
        if host not in LOOPBACK:
            raise SoakError(f"the soak runs against a loopback server only, not {host!r}")
        self.config = config
        self.memory = memory
        self._rng = random.Random(config.seed)

    def _client(self):
        import httpx

        c = self.config
        headers = {"Authorization": f"Bearer {c.api_key}"} if c.api_key else {}
        n = c.concurrency + 4
        return httpx.AsyncClient(
            base_url=c.url.rstrip("/"),
            headers=headers,
            timeout=httpx.Timeout(c.timeout_s, connect=10.0),
            limits=httpx.Limits(max_connections=n, max_keepalive_connections=n),
        )

    async def one(self, client, p: Planned) -> Outcome:
        """Send ``p`` and read the answer as planned (abandoning a stream at ``abort_at`` bytes)."""
        import httpx

        status = None
        received = 0
        aborted = False
        problem = None
        try:
            async with client.stream(
                "POST", SPEECH, content=p.body, headers={"Content-Type": p.content_type}
            ) as response:
                status = response.status_code
                if p.mode == "malformed" or status != 200:
                    content = await response.aread()
                    received = len(content)
                    if p.mode != "malformed":
                        problem = f"status {status}: {content[:120]!r}"
                    elif status != EXPECTED_STATUS[p.what]:
                        problem = f"{p.what}: status {status}, expected {EXPECTED_STATUS[p.what]}"
                    else:
                        problem = check_envelope(status, content)
                elif p.abort_at is not None:
                    if p.abort_at > 0:
                        async for piece in response.aiter_raw():
                            received += len(piece)
                            if received >= p.abort_at:
                                break
                    aborted = not response.is_stream_consumed or received >= p.abort_at
                else:
                    async for piece in response.aiter_raw():
                        received += len(piece)
                    if received == 0:
                        problem = "empty 200 response"
        except httpx.HTTPError as exc:
            problem = f"{type(exc).__name__}: {exc}"[:200]
        return Outcome(p.index, p.mode, p.what, status, received, aborted, problem)

    async def _probe(self, client) -> tuple[bool, float | None]:
        """(ready?, in-flight gauge)."""
        import httpx

        try:
            ready = (await client.get("/health/ready")).status_code == 200
            metrics = await client.get("/metrics")
            return ready, parse_in_flight(metrics.text) if metrics.status_code == 200 else None
        except httpx.HTTPError:
            return False, None

    async def _watch_ready(self, client, done: asyncio.Event) -> tuple[int, int]:
        """Poll readiness until ``done``: (probes, probes not ready)."""
        import httpx

        probes = not_ready = 0
        while not done.is_set():
            try:
                ok = (await client.get("/health/ready")).status_code == 200
            except httpx.HTTPError:
                ok = False
            probes += 1
            not_ready += not ok
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), self.config.ready_poll_s)
        return probes, not_ready

    async def _settle(self, client) -> tuple[float | None, float | None, float]:
        """Wait for the in-flight gauge to read 0: (first reading, last reading, seconds waited)."""
        t0 = time.perf_counter()
        _, first = await self._probe(client)
        last = first
        while last != 0 and time.perf_counter() - t0 < self.config.settle_s:
            await asyncio.sleep(0.05)
            _, last = await self._probe(client)
        return first, last, time.perf_counter() - t0

    async def _heap(self, client) -> dict[str, float]:
        """The server's C heap (``parawave_malloc_bytes``) in MiB: in use vs free tells a leak from
        fragmentation."""
        import httpx

        try:
            response = await client.get("/metrics")
        except httpx.HTTPError:
            return {}
        return parse_heap(response.text) if response.status_code == 200 else {}

    async def preflight(self, client) -> dict[str, Any]:
        import httpx

        try:
            ready = await client.get("/health/ready")
        except httpx.HTTPError as exc:
            raise SoakError(f"cannot reach {self.config.url}: {type(exc).__name__}: {exc}") from exc
        if ready.status_code != 200:
            raise SoakError(f"{self.config.url} is not ready (GET /health/ready: {ready.status_code})")
        if self.memory.rss_mb() is None and self.memory.cgroup_mb() is None:
            raise SoakError(f"cannot read the memory of {self.memory.label}")
        return {"url": self.config.url, "memory": self.memory.label, **ready.json()}

    async def run(self, on_wave=None) -> dict[str, Any]:
        c = self.config
        started = datetime.now(UTC)
        waves: list[dict[str, Any]] = []
        problems: list[dict[str, Any]] = []
        statuses: Counter[str] = Counter()
        async with self._client() as client:
            server = await self.preflight(client)
            first = self._wave_row(0, 0, 0.0, [], (0, 0), (0.0, 0.0, 0.0))  # before any request
            first.update(await self._heap_row(client))
            waves.append(first)
            t0 = time.perf_counter()
            sent = 0
            while sent < c.requests and time.perf_counter() - t0 < c.duration_s:
                n = min(c.concurrency, c.requests - sent)
                plan = plan_wave(c, self._rng, sent, n)
                done = asyncio.Event()
                watcher = asyncio.create_task(self._watch_ready(client, done))
                outcomes = await asyncio.gather(*(self.one(client, p) for p in plan))
                done.set()
                ready = await watcher
                settle = await self._settle(client)
                sent += n
                row = self._wave_row(len(waves), sent, time.perf_counter() - t0, outcomes, ready, settle)
                row.update(await self._heap_row(client))
                waves.append(row)
                for o in outcomes:
                    statuses[str(o.status)] += 1
                    if o.problem is not None:
                        problems.append({"wave": row["wave"], **asdict(o)})
                if on_wave is not None:
                    on_wave(row)
        summary = summarize(waves, problems, statuses, c)
        return {
            "tool": "parawave-soak",
            "started_at": started.isoformat(timespec="seconds"),
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "config": c.to_dict(),
            "server": server,
            "hardware": hardware.describe(),
            "summary": summary,
            "waves": waves,
            "problems": problems[:200],
        }

    async def _heap_row(self, client) -> dict[str, float | None]:
        heap = await self._heap(client)
        return {"heap_in_use_mb": heap.get("in_use"), "heap_free_mb": heap.get("free")}

    def _wave_row(
        self,
        wave: int,
        sent: int,
        elapsed: float,
        outcomes: Sequence[Outcome],
        ready: tuple[int, int],
        settle: tuple[float | None, float | None, float],
    ) -> dict[str, Any]:
        rss, cg = self.memory.rss_mb(), self.memory.cgroup_mb()
        return {
            "wave": wave,
            "requests": sent,
            "elapsed_s": round(elapsed, 2),
            "rss_mb": None if rss is None else round(rss, 1),
            "cgroup_mb": None if cg is None else round(cg, 1),
            "ok": sum(o.status == 200 and o.problem is None and not o.aborted for o in outcomes),
            "aborted": sum(o.aborted for o in outcomes),
            "malformed": sum(o.mode == "malformed" for o in outcomes),
            "status_4xx": sum(o.status is not None and 400 <= o.status < 500 for o in outcomes),
            "status_5xx": sum(o.status is not None and o.status >= 500 for o in outcomes),
            "problems": sum(o.problem is not None for o in outcomes),
            "ready_probes": ready[0],
            "not_ready": ready[1],
            "in_flight_end": settle[0],
            "in_flight_settled": settle[1],
            "settle_s": round(settle[2], 2),
        }


# ------------------------------------------------------------------------------------ the command


def _choices(text: str, allowed: Sequence[str] | None, what: str) -> tuple[str, ...]:
    values = tuple(v.strip() for v in text.split(",") if v.strip())
    if not values:
        raise SoakError(f"--{what} needs at least one value")
    if allowed is not None:
        bad = [v for v in values if v not in allowed]
        if bad:
            raise SoakError(f"--{what}: unknown {', '.join(bad)} (choose from {', '.join(allowed)})")
    return values


app = typer.Typer(add_completion=False, help=__doc__.split("\n\n")[0] if __doc__ else None)


@app.command()
def main(
    url: str = typer.Option("http://127.0.0.1:8000", help="Base URL of a running server (loopback)."),
    serve: bool = typer.Option(
        False, "--serve", help="Start 'parawave serve' on a free loopback port and soak it."
    ),
    voices_dir: Path | None = typer.Option(
        None, help="--serve: folder of voice bundles [default: the settings']."
    ),
    server_env: list[str] = typer.Option(
        [], "--server-env", help="--serve: KEY=VALUE for the server's environment."
    ),
    pid: int | None = typer.Option(None, help="Server process id (RSS from /proc/<pid>/status)."),
    container: str | None = typer.Option(None, help="Server container name (its main process and cgroup)."),
    requests: int = typer.Option(960, min=1, help="Stop after this many requests..."),
    duration: float = typer.Option(
        1800.0, min=1.0, help="...or after the wave that ends past this many seconds."
    ),
    concurrency: int = typer.Option(24, min=1, help="Requests per wave, sent at once."),
    seed: int = typer.Option(0, help="Seed of the request plan (same seed, same requests)."),
    formats: str = typer.Option(",".join(FORMATS), help="Response formats to draw from."),
    models: str = typer.Option(",".join(MODELS), help="Models to draw from."),
    voices: str = typer.Option(",".join(VOICES), help="Voices to draw from."),
    stream_fraction: float = typer.Option(
        0.45, min=0.0, max=1.0, help="Share of well-formed requests streamed."
    ),
    sse_fraction: float = typer.Option(0.3, min=0.0, max=1.0, help="Share of streamed ones as SSE."),
    abort_fraction: float = typer.Option(0.8, min=0.0, max=1.0, help="Share of streamed ones abandoned."),
    malformed_fraction: float = typer.Option(0.15, min=0.0, max=1.0, help="Share of malformed requests."),
    warmup_waves: int = typer.Option(3, min=0, help="RSS growth counts from the end of this wave."),
    max_growth: float = typer.Option(5.0, min=0.0, help="Bound on RSS growth after warm-up (%)."),
    settle: float = typer.Option(
        60.0, min=0.0, help="Seconds to wait after a wave for in-flight to reach 0."
    ),
    timeout: float = typer.Option(120.0, min=0.1, help="Per-request timeout (s)."),
    api_key: str | None = typer.Option(
        None, envvar="PARAWAVE_API_KEY", help="Bearer key if the server has one."
    ),
    out: Path = typer.Option(
        Path("soak-report"), help="Folder for README.md, waves.tsv, soak.json, rss.png."
    ),
) -> None:
    """Chaos soak: waves of mixed, abandoned and malformed requests; RSS, 5xx, readiness per wave."""
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per request
    server: ServedProcess | None = None
    try:
        config = SoakConfig(
            url=url,
            requests=requests,
            duration_s=duration,
            concurrency=concurrency,
            seed=seed,
            formats=_choices(formats, FORMATS, "formats"),
            models=_choices(models, None, "models"),
            voices=_choices(voices, None, "voices"),
            stream_fraction=stream_fraction,
            sse_fraction=sse_fraction,
            abort_fraction=abort_fraction,
            malformed_fraction=malformed_fraction,
            warmup_waves=warmup_waves,
            max_growth_pct=max_growth,
            settle_s=settle,
            timeout_s=timeout,
            api_key=api_key,
        )
        env = {}
        for item in server_env:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise SoakError(f"--server-env takes KEY=VALUE, got {item!r}")
            env[key] = value
        if serve:
            out.mkdir(parents=True, exist_ok=True)
            server = ServedProcess(voices_dir, env, log_path=out / "server.log")
            server.wait_ready()
            config = SoakConfig(**{**asdict(config), "url": server.url})
            memory = MemorySource(
                pid=server.process.pid, cgroup=None, label=f"parawave serve, pid {server.process.pid}"
            )
        elif container is not None:
            memory = MemorySource.for_container(container)
        elif pid is not None:
            memory = MemorySource(pid=pid)
        else:
            raise SoakError("say whose memory to watch: --serve, --pid or --container")
        soaker = Soaker(config, memory)
        report = asyncio.run(soaker.run(on_wave=lambda w: typer.echo(wave_line(w), err=True)))
    except SoakError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    finally:
        if server is not None:
            server.stop()
    if serve:
        report["server"]["env"] = env
    args = sys.argv[1:]
    command = "parawave soak " + " ".join(args[1:] if args[:1] == ["soak"] else args)
    paths = write_report(report, out, command)
    typer.echo(render_markdown(report, command))
    typer.echo("wrote " + ", ".join(str(p) for p in paths.values()), err=True)
    if not report["summary"]["passed"]:
        raise typer.Exit(1)


if __name__ == "__main__":
    app()
