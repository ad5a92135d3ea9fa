"""Streaming time to first audio with word timestamps on and off, same server, side by side.

    python -m service.loadtest.timestamps_ttfa --url http://127.0.0.1:8000 --pairs 30

Each pair sends the same SSE request (``--texts``: a different line for each pair) (``stream_format: "sse"``, ``response_format: "pcm"``) with
``timestamps`` off and on, in ABBA order (off-on, then on-off) so a drift in the machine's load falls
on both; one request at a time. Time to first audio: from sending the request to receiving the
first ``speech.audio.delta`` event. Prints JSON: per mode the median, 10th and 90th percentile, and
the median per-pair difference (on minus off).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import httpx

TEXT = (
    "The prisoner had nothing to deal with but wooden panels, and by dint of cutting and chopping he got "
    "both the lower panels out. Under these circumstances, unnatural as they are, with proper management, "
    "the bean will thrust forth its radicle and its plumule."
)


def one(client: httpx.Client, url: str, text: str, timestamps: bool) -> dict:
    body = {
        "model": "tts-1",
        "input": text,
        "response_format": "pcm",
        "stream_format": "sse",
        "timestamps": timestamps,
        "seed": 1,
    }
    t0 = time.perf_counter()
    first = words_at = None
    words = 0
    buf = ""
    with client.stream("POST", f"{url}/v1/audio/speech", json=body) as r:
        r.raise_for_status()
        for piece in r.iter_text():
            buf += piece
            *events, buf = buf.split("\n\n")
            for e in events:
                if not e.startswith("data: "):
                    continue
                event = json.loads(e[6:])
                if event["type"] == "speech.audio.delta" and first is None:
                    first = time.perf_counter() - t0
                elif event["type"] == "speech.audio.timestamps":
                    words += len(event["words"])
                    if words_at is None:
                        words_at = time.perf_counter() - t0
    return {"ttfa": first, "first_words": words_at, "total": time.perf_counter() - t0, "words": words}


def _summary(xs: list[float]) -> dict:
    q = statistics.quantiles(xs, n=10) if len(xs) > 1 else xs * 9
    return {
        "median_ms": round(1000 * statistics.median(xs), 1),
        "p10_ms": round(1000 * q[0], 1),
        "p90_ms": round(1000 * q[-1], 1),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", default="http://127.0.0.1:8000")
    p.add_argument("--pairs", type=int, default=30)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--text", default=TEXT)
    p.add_argument(
        "--texts",
        default=None,
        help="a file of lines (LJSpeech id|text or plain): pair i speaks line i, so the server's word caches "
        "have not seen most of it (default: --text every time)",
    )
    args = p.parse_args(argv)
    texts = [args.text] * args.pairs
    if args.texts:
        raw = Path(args.texts).read_text(encoding="utf-8").splitlines()
        lines = [ln.split("|", 1)[-1].strip() for ln in raw if ln.strip()]
        texts = [lines[i % len(lines)] for i in range(args.pairs)]
    runs: dict[bool, list[dict]] = {False: [], True: []}
    with httpx.Client(timeout=120) as client:
        for _ in range(args.warmup):
            one(client, args.url, args.text, False)
            one(client, args.url, args.text, True)
        for i in range(args.pairs):
            order = (False, True) if i % 2 == 0 else (True, False)
            for mode in order:
                runs[mode].append(one(client, args.url, texts[i], mode))
    diffs = [on["ttfa"] - off["ttfa"] for off, on in zip(runs[False], runs[True], strict=True)]
    out = {
        "pairs": args.pairs,
        "text_chars_median": statistics.median(len(t) for t in texts),
        "ttfa_off": _summary([r["ttfa"] for r in runs[False]]),
        "ttfa_on": _summary([r["ttfa"] for r in runs[True]]),
        "ttfa_on_minus_off_median_ms": round(1000 * statistics.median(diffs), 1),
        "first_timestamps_event_on": _summary([r["first_words"] for r in runs[True]]),
        "total_off": _summary([r["total"] for r in runs[False]]),
        "total_on": _summary([r["total"] for r in runs[True]]),
        "words_on": runs[True][0]["words"],
        "words_off": runs[False][0]["words"],
    }
    sys.stdout.write(json.dumps(out, indent=1) + "\n")  # the result is the output (a script reads it)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
