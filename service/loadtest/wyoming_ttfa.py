"""Time to first audio over Wyoming vs over HTTP streaming: the same sentence, the same voice, the same
server, requests one at a time and interleaved (HTTP, Wyoming synthesize, Wyoming stream, HTTP, ...)
so that the machine's load falls on all three alike.

    python -m service.loadtest.wyoming_ttfa --url http://127.0.0.1:8000 --wyoming tcp://127.0.0.1:10200 --runs 15

* http: ``POST /v1/audio/speech`` with ``stream: true`` (pcm) -> the first audio byte of the body.
* wyoming synthesize: ``synthesize`` -> the first ``audio-chunk`` event.
* wyoming stream: ``synthesize-start``, the sentence as one ``synthesize-chunk``, ``synthesize-stop``
  (all sent at once) -> the first ``audio-chunk`` event.

Each timed from just before the request is sent, on a fresh connection (as Home Assistant connects
per request). Prints the median, min and max (ms) of each, and the machine.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from urllib.parse import urlparse

import httpx
import typer

from service.loadtest import hardware

DEFAULT_TEXT = "Turn on the kitchen lights and set the thermostat to twenty one degrees."

app = typer.Typer(add_completion=False, help=__doc__.split("\n\n")[0] if __doc__ else None)


async def _http(client: httpx.AsyncClient, url: str, text: str, voice: str | None) -> float:
    body = {"input": text, "response_format": "pcm", "stream": True, **({"voice": voice} if voice else {})}
    start = time.perf_counter()
    first = None
    async with client.stream("POST", f"{url}/v1/audio/speech", json=body) as r:
        r.raise_for_status()
        async for data in r.aiter_bytes():  # to the end: the next request starts on an idle server
            if data and first is None:
                first = time.perf_counter() - start
    if first is None:
        raise RuntimeError("no audio in the HTTP response")
    return first


async def _wyoming(host: str, port: int, text: str, voice: str | None, stream: bool, timeout: float) -> float:
    from wyoming.audio import AudioChunk
    from wyoming.client import AsyncTcpClient
    from wyoming.error import Error
    from wyoming.tts import (
        Synthesize,
        SynthesizeChunk,
        SynthesizeStart,
        SynthesizeStop,
        SynthesizeVoice,
    )

    which = SynthesizeVoice(name=voice) if voice else None
    done = "synthesize-stopped" if stream else "audio-stop"
    async with AsyncTcpClient(host, port, connect_timeout=timeout, read_timeout=timeout) as client:
        start = time.perf_counter()
        if stream:
            await client.write_event(SynthesizeStart(voice=which).event())
            await client.write_event(SynthesizeChunk(text=text).event())
            await client.write_event(SynthesizeStop().event())
        else:
            await client.write_event(Synthesize(text=text, voice=which).event())
        first = None
        while True:
            event = await client.read_event()
            if event is None:
                raise RuntimeError("the Wyoming server closed the connection")
            if Error.is_type(event.type):
                raise RuntimeError(f"Wyoming error: {Error.from_event(event).text}")
            if first is None and AudioChunk.is_type(event.type):
                first = time.perf_counter() - start
            if event.type == done:
                if first is None:
                    raise RuntimeError("no audio over Wyoming")
                return first


async def _measure(
    url: str, wyoming: str, text: str, voice: str | None, runs: int, warmup: int, timeout: float
) -> dict[str, list[float]]:
    parsed = urlparse(wyoming)
    if parsed.scheme != "tcp" or not parsed.hostname or parsed.port is None:
        raise typer.BadParameter(f"--wyoming must be tcp://host:port, got {wyoming!r}")
    host, port = parsed.hostname, parsed.port
    times: dict[str, list[float]] = {"http stream": [], "wyoming synthesize": [], "wyoming stream": []}
    async with httpx.AsyncClient(timeout=timeout) as client:
        for i in range(warmup + runs):
            got = {
                "http stream": await _http(client, url, text, voice),
                "wyoming synthesize": await _wyoming(host, port, text, voice, False, timeout),
                "wyoming stream": await _wyoming(host, port, text, voice, True, timeout),
            }
            if i >= warmup:
                for k, v in got.items():
                    times[k].append(v)
    return times


@app.command()
def main(
    url: str = typer.Option("http://127.0.0.1:8000", help="The server's HTTP base URL."),
    wyoming: str = typer.Option("tcp://127.0.0.1:10200", help="The same server's Wyoming URI."),
    text: str = typer.Option(DEFAULT_TEXT, help="The sentence (the same for every request)."),
    voice: str | None = typer.Option(None, help="Voice (HTTP id / Wyoming name); default: the server's."),
    runs: int = typer.Option(15, min=1, help="Timed rounds (one request of each kind per round)."),
    warmup: int = typer.Option(2, min=0, help="Untimed rounds first."),
    timeout: float = typer.Option(120.0, min=0.1, help="Per-request timeout (s)."),
) -> None:
    """Median time to first audio of each way in, over ``runs`` interleaved rounds."""
    times = asyncio.run(_measure(url, wyoming, text, voice, runs, warmup, timeout))
    hw = hardware.describe()
    typer.echo(f"machine: {hardware.summary(hw)}; load average {_load()}")
    typer.echo(f"text: {text!r} ({len(text)} chars); {runs} rounds after {warmup} warm-up")
    typer.echo(f"{'way in':<20} {'median ms':>10} {'min ms':>8} {'max ms':>8}")
    for name, values in times.items():
        ms = [v * 1000 for v in values]
        typer.echo(f"{name:<20} {statistics.median(ms):>10.1f} {min(ms):>8.1f} {max(ms):>8.1f}")


def _load() -> str:
    import os

    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


if __name__ == "__main__":
    app()
