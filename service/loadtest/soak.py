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
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import shutil
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import typer

from service.loadtest import hardware
from service.loadtest.sentences import SENTENCES

log = logging.getLogger(__name__)

FORMATS: tuple[str, ...] = ("mp3", "opus", "aac", "flac", "wav", "pcm")
MODELS: tuple[str, ...] = ("tts-1", "tts-1-hd")
VOICES: tuple[str, ...] = ("alloy", "nova", "fable", "echo", "shimmer", "onyx")  # OpenAI names (all voices)
LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})
ENVELOPE_KEYS = frozenset({"message", "type", "param", "code"})
SPEECH = "/v1/audio/speech"
Mode = Literal["whole", "stream", "sse", "malformed"]


class SoakError(RuntimeError):
    """The soak cannot run (not loopback, server unreachable or not ready, no memory source): one line."""


@dataclass(frozen=True)
class SoakConfig:
    url: str
    requests: int = 960  # stop after this many requests ...
    duration_s: float = 1800.0  # ... or once a wave ends past this many seconds
    concurrency: int = 24  # requests per wave, sent at once
    seed: int = 0
    formats: tuple[str, ...] = FORMATS
    models: tuple[str, ...] = MODELS
    voices: tuple[str, ...] = VOICES
    stream_fraction: float = 0.45  # of the well-formed requests: streamed (chunked or SSE)
    sse_fraction: float = 0.3  # of the streamed ones: as Server-Sent Events
    abort_fraction: float = 0.8  # of the streamed ones: abandoned at a random byte
    abort_max_bytes: int = 40_000  # abandon after 0 .. this many bytes (0: right after the headers)
    malformed_fraction: float = 0.15
    max_sentences: int = 3  # each request speaks 1 .. this many sentences of the load-test texts
    warmup_waves: int = 3  # RSS growth is measured from the end of this wave
    max_growth_pct: float = 5.0
    settle_s: float = 60.0  # after a wave, wait this long at most for the in-flight gauge to reach 0
    timeout_s: float = 120.0  # per request
    ready_poll_s: float = 0.25
    api_key: str | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["api_key"] = "***" if self.api_key else None
        return d


@dataclass(frozen=True)
class Planned:
    """One request of the plan (drawn from the seeded RNG before the wave starts)."""

    index: int
    mode: Mode
    body: bytes
    content_type: str = "application/json"
    abort_at: int | None = None  # streamed: close the connection after this many bytes
    what: str = ""  # the malformed case, or "fmt/model/voice"


@dataclass(frozen=True)
class Outcome:
    index: int
    mode: Mode
    what: str
    status: int | None  # None: no response (transport error)
    bytes: int
    aborted: bool  # the client closed the connection early, as planned
    problem: str | None  # None = as expected


# ------------------------------------------------------------------------------------ the plan

# (name, body, content type, expected status); every answer must also be in the OpenAI error envelope
MALFORMED: tuple[tuple[str, bytes, str, int], ...] = (
    ("truncated_json", b'{"input": "Hello there", "voice": ', "application/json", 400),
    ("not_an_object", b'["Hello there"]', "application/json", 400),
    ("empty_input", b'{"input": ""}', "application/json", 400),
    ("blank_input", b'{"input": "   \\n  "}', "application/json", 400),
    ("missing_input", b'{"voice": "alloy"}', "application/json", 400),
    ("input_not_text", b'{"input": 42}', "application/json", 400),
    ("unknown_format", b'{"input": "Hello there", "response_format": "ogg"}', "application/json", 400),
    ("unknown_voice", b'{"input": "Hello there", "voice": "nobody"}', "application/json", 400),
    ("unknown_model", b'{"input": "Hello there", "model": "tts-9"}', "application/json", 400),
    ("speed_as_string", b'{"input": "Hello there", "speed": "1.0"}', "application/json", 400),
    ("speed_out_of_range", b'{"input": "Hello there", "speed": 9}', "application/json", 400),
    ("seed_as_bool", b'{"input": "Hello there", "seed": false}', "application/json", 400),
    ("pitch_out_of_range", b'{"input": "Hello there", "pitch": 99}', "application/json", 400),
    ("lone_surrogate", b'{"input": "Hello \\ud800 there"}', "application/json", 400),
    ("bad_stream_format", b'{"input": "Hello there", "stream_format": "video"}', "application/json", 400),
    ("too_long", json.dumps({"input": "word " * 1000}).encode(), "application/json", 400),
    ("not_json", b"input=Hello+there", "application/x-www-form-urlencoded", 415),
    ("too_large", json.dumps({"input": "x" * 70_000}).encode(), "application/json", 413),
)
EXPECTED_STATUS = {name: status for name, _, _, status in MALFORMED}


def plan_wave(config: SoakConfig, rng: random.Random, first: int, n: int) -> list[Planned]:
    """``n`` requests (indices ``first``..) drawn from ``rng``: the same seed gives the same plan."""
    out = []
    for i in range(first, first + n):
        if rng.random() < config.malformed_fraction:
            name, body, ctype, _ = rng.choice(MALFORMED)
            out.append(Planned(i, "malformed", body, ctype, what=name))
            continue
        fmt, model, voice = rng.choice(config.formats), rng.choice(config.models), rng.choice(config.voices)
        k = rng.randint(1, max(1, config.max_sentences))
        text = " ".join(rng.choice(SENTENCES) for _ in range(k))
        body: dict[str, Any] = {"model": model, "input": text, "voice": voice, "response_format": fmt}
        mode: Mode = "whole"
        abort_at = None
        if rng.random() < config.stream_fraction:
            mode = "sse" if rng.random() < config.sse_fraction else "stream"
            body["stream"] = True
            if mode == "sse":
                body["stream_format"] = "sse"
            if rng.random() < config.abort_fraction:
                abort_at = rng.randint(0, config.abort_max_bytes)
        out.append(
            Planned(i, mode, json.dumps(body).encode(), abort_at=abort_at, what=f"{fmt}/{model}/{voice}")
        )
    return out


# ------------------------------------------------------------------------------------ memory


class MemorySource:
    """The server's memory: ``VmRSS`` of a process, plus a cgroup's ``memory.current`` when known."""

    def __init__(self, pid: int | None = None, cgroup: Path | None = None, label: str = "") -> None:
        self.pid = pid
        self.cgroup = cgroup
        self.label = label or (f"pid {pid}" if pid else str(cgroup))

    @classmethod
    def for_container(cls, name: str) -> MemorySource:
        """The container's main process (its pid as the host sees it) and its cgroup (v2 or v1)."""
        docker = shutil.which("docker")
        if docker is None:
            raise SoakError("--container needs the docker command")
        try:
            pid = int(
                subprocess.run(
                    [docker, "inspect", "-f", "{{.State.Pid}}", name],
                    capture_output=True,
                    text=True,
                    check=True,
                    timeout=30,
                ).stdout.strip()
            )
        except (subprocess.SubprocessError, ValueError) as exc:
            raise SoakError(f"cannot find container {name!r}: {exc}") from None
        return cls(pid=pid, cgroup=_cgroup_of(pid), label=f"container {name} (pid {pid})")

    def rss_mb(self) -> float | None:
        if self.pid is None:
            return None
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0  # kB -> MiB
        except (OSError, ValueError):
            return None
        return None

    def cgroup_mb(self) -> float | None:
        """The cgroup's memory use less its inactive page cache, as ``docker stats`` counts it."""
        if self.cgroup is None:
            return None
        for name, inactive in (
            ("memory.current", "inactive_file"),
            ("memory.usage_in_bytes", "total_inactive_file"),
        ):
            try:
                used = int((self.cgroup / name).read_text().strip())
            except (OSError, ValueError):
                continue
            try:
                stat = dict(line.split() for line in (self.cgroup / "memory.stat").read_text().splitlines())
                used -= int(stat.get(inactive, 0))
            except (OSError, ValueError):
                pass
            return used / (1 << 20)
        return None


def _cgroup_of(pid: int) -> Path | None:
    """The memory cgroup folder of ``pid``: v1's memory controller when mounted, else v2's."""
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return None
    found = []
    for line in lines:
        hier, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):  # v1 (or hybrid)
            found.insert(0, Path("/sys/fs/cgroup/memory") / path.lstrip("/"))
        elif hier == "0" and controllers == "":  # v2 (unified, or hybrid's unified mount)
            found += [
                Path("/sys/fs/cgroup") / path.lstrip("/"),
                Path("/sys/fs/cgroup/unified") / path.lstrip("/"),
            ]
    return next(
        (p for p in found if (p / "memory.current").exists() or (p / "memory.usage_in_bytes").exists()), None
    )


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
            with _suppress_timeout():
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


class _suppress_timeout:
    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type, exc, tb) -> bool:
        return exc_type is asyncio.TimeoutError or exc_type is TimeoutError


def summarize(
    waves: list[dict[str, Any]], problems: list[dict[str, Any]], statuses: Mapping[str, int], c: SoakConfig
) -> dict[str, Any]:
    """The verdict over the waves (``waves[0]`` is the reading before any request)."""
    measured = [w for w in waves if w["wave"] > 0]
    key = "rss_mb" if waves[0]["rss_mb"] is not None else "cgroup_mb"
    base_wave = min(c.warmup_waves, len(measured))
    base = waves[base_wave][key] if measured else None
    after = [w[key] for w in measured if w["wave"] >= base_wave]
    final = measured[-1][key] if measured else None
    growth = None if not base or final is None else round(100.0 * (final - base) / base, 2)
    peak_growth = None if not base or not after else round(100.0 * (max(after) - base) / base, 2)
    requests = measured[-1]["requests"] if measured else 0
    s = {
        "requests": requests,
        "waves": len(measured),
        "elapsed_s": measured[-1]["elapsed_s"] if measured else 0.0,
        "memory": key,
        "start_mb": waves[0][key],
        "warmup_waves": base_wave,
        "after_warmup_mb": base,
        "final_mb": final,
        "peak_mb": max((w[key] for w in waves if w[key] is not None), default=None),
        "growth_after_warmup_pct": growth,
        "peak_growth_after_warmup_pct": peak_growth,
        "status_5xx": sum(w["status_5xx"] for w in measured),
        "problems": len(problems),
        "not_ready": sum(w["not_ready"] for w in measured),
        "ready_probes": sum(w["ready_probes"] for w in measured),
        "in_flight_not_settled": sum(w["in_flight_settled"] != 0 for w in measured),
        "aborted": sum(w["aborted"] for w in measured),
        "malformed": sum(w["malformed"] for w in measured),
        "statuses": dict(sorted(statuses.items())),
    }
    s["passed"] = bool(
        measured
        and s["status_5xx"] == 0
        and s["problems"] == 0
        and s["not_ready"] == 0
        and s["in_flight_not_settled"] == 0
        and growth is not None
        and growth < c.max_growth_pct
    )
    return s


# ------------------------------------------------------------------------------------ the report

TSV_COLUMNS = (
    "wave",
    "requests",
    "elapsed_s",
    "rss_mb",
    "cgroup_mb",
    "heap_in_use_mb",
    "heap_free_mb",
    "ok",
    "aborted",
    "malformed",
    "status_4xx",
    "status_5xx",
    "problems",
    "ready_probes",
    "not_ready",
    "in_flight_end",
    "in_flight_settled",
    "settle_s",
)


def wave_line(w: dict[str, Any]) -> str:
    mem = f"RSS {w['rss_mb']} MiB" if w["rss_mb"] is not None else f"cgroup {w['cgroup_mb']} MiB"
    if w.get("heap_in_use_mb") is not None:
        mem += f" (C heap in use {w['heap_in_use_mb']}, free {w['heap_free_mb']})"
    return (
        f"wave {w['wave']:>4}: {w['requests']:>6} requests, {w['elapsed_s']:>8.1f} s, {mem}, "
        f"5xx {w['status_5xx']}, problems {w['problems']}, not ready {w['not_ready']}/{w['ready_probes']}, "
        f"in flight {w['in_flight_end']} -> {w['in_flight_settled']}"
    )


def render_markdown(report: dict[str, Any], command: str | None = None) -> str:
    c, s = report["config"], report["summary"]
    verdict = "PASS" if s["passed"] else "FAIL"
    lines = [
        f"# parawave memory soak: {verdict}",
        "",
        f"- server: {report['server']['url']} ({report['server']['memory']}), voices {report['server'].get('voices')}",
        f"- hardware: {hardware.summary(report['hardware'])}",
        f"- mix: waves of {c['concurrency']}, formats {', '.join(c['formats'])}, models "
        f"{', '.join(c['models'])}, {c['stream_fraction']:.0%} streamed ({c['sse_fraction']:.0%} of them SSE, "
        f"{c['abort_fraction']:.0%} abandoned at 0..{c['abort_max_bytes']} bytes), "
        f"{c['malformed_fraction']:.0%} malformed; seed {c['seed']}",
        f"- started {report['started_at']}, finished {report['finished_at']}",
    ]
    if command:
        lines.append(f"- command: `{command}`")
    lines += [
        "",
        f"| requests | waves | time | {s['memory']} start | after {s['warmup_waves']} warm-up waves | final "
        "| peak | growth after warm-up | 5xx | problems | not ready | in flight not back to 0 | aborted | malformed |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {s['requests']} | {s['waves']} | {s['elapsed_s']:.0f} s | {s['start_mb']} MiB | {s['after_warmup_mb']} MiB "
        f"| {s['final_mb']} MiB | {s['peak_mb']} MiB | {s['growth_after_warmup_pct']} % "
        f"(peak {s['peak_growth_after_warmup_pct']} %) | {s['status_5xx']} | {s['problems']} "
        f"| {s['not_ready']}/{s['ready_probes']} | {s['in_flight_not_settled']} | {s['aborted']} | {s['malformed']} |",
        "",
        f"Bound: growth after warm-up < {c['max_growth_pct']:g} %; statuses seen: "
        + ", ".join(f"{k}: {v}" for k, v in s["statuses"].items()),
        "",
        "Per wave: `waves.tsv`; plot: `rss.png`.",
    ]
    if report["problems"]:
        lines += ["", "First problems:", ""]
        lines += [
            f"- wave {p['wave']} #{p['index']} {p['mode']} {p['what']}: {p['problem']}"
            for p in report["problems"][:10]
        ]
    return "\n".join(lines) + "\n"


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    waves, s = report["waves"], report["summary"]
    xs = [w["requests"] for w in waves]
    fig, ax = plt.subplots(figsize=(9, 4.2), constrained_layout=True)
    if any(w["rss_mb"] is not None for w in waves):
        ax.plot(xs, [w["rss_mb"] for w in waves], "-o", ms=3, label="server RSS")
    if any(w["cgroup_mb"] is not None for w in waves):
        ax.plot(xs, [w["cgroup_mb"] for w in waves], "-s", ms=3, label="cgroup memory.current")
    if any(w.get("heap_in_use_mb") is not None for w in waves):
        ax.plot(xs, [w.get("heap_in_use_mb") for w in waves], "-", lw=1, label="C heap in use (mallinfo2)")
        ax.plot(xs, [w.get("heap_free_mb") for w in waves], "--", lw=1, label="C heap free, kept (mallinfo2)")
    base = s["after_warmup_mb"]
    if base:
        bound = base * (1 + report["config"]["max_growth_pct"] / 100)
        ax.axhline(
            bound, color="grey", linestyle=":", label=f"+{report['config']['max_growth_pct']:g} % bound"
        )
        ax.axvline(
            waves[s["warmup_waves"]]["requests"], color="grey", linestyle="--", lw=0.8, label="end of warm-up"
        )
    ax.set(
        xlabel="requests sent",
        ylabel="MiB",
        title=f"parawave soak: {s['requests']} requests, {s['waves']} waves",
    )
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(report: dict[str, Any], out: Path, command: str | None = None) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": out / "soak.json",
        "tsv": out / "waves.tsv",
        "markdown": out / "README.md",
        "png": out / "rss.png",
    }
    paths["json"].write_text(json.dumps({**report, "command": command}, indent=2) + "\n")
    rows = ["\t".join(TSV_COLUMNS)]
    rows += ["\t".join("" if w[k] is None else str(w[k]) for k in TSV_COLUMNS) for w in report["waves"]]
    paths["tsv"].write_text("\n".join(rows) + "\n")
    paths["markdown"].write_text(render_markdown(report, command))
    try:
        plot(report, paths["png"])
    except ImportError:
        log.warning("matplotlib is not installed: no plot (pip install -e '.[load]')")
        del paths["png"]
    return paths


# ------------------------------------------------------------------------------------ a server of our own


class ServedProcess:
    """``python -m service.cli serve`` on a free loopback port, in its own process (so its memory is its own)."""

    def __init__(
        self,
        voices_dir: Path | None = None,
        env: Mapping[str, str] | None = None,
        log_path: Path | None = None,
    ) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        args = [sys.executable, "-m", "service.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        args += ["--device", "cpu", "--log-level", "warning"]
        if voices_dir is not None:
            args += ["--voices-dir", str(voices_dir)]
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("PARAWAVE_")}
        full_env.update(env or {})
        self._log = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(args, env=full_env, stdout=self._log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout_s: float = 300.0) -> None:
        import httpx

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SoakError(f"the server exited ({self.process.returncode}) before it was ready")
            try:
                if httpx.get(f"{self.url}/health/ready", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise SoakError(f"the server was not ready after {timeout_s:g} s")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log is not subprocess.DEVNULL:
            self._log.close()


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
