"""One 298-character sentence of 12-digit numbers (normalized to ~3,000 phonemes), four times, against a
`parawave serve` of its own: the server's RSS and C heap after each (issue 40, ONNX Runtime's arena).

    python recipes/reports/memory-soak/digits_probe.py [PARAWAVE_REQUEST_TIMEOUT_S=900 ...]   # from the repo root
"""

import sys
import time

import httpx

from service.loadtest.soak import parse_heap
from service.loadtest.soak_server import MemorySource, ServedProcess

env = dict(a.split("=", 1) for a in sys.argv[1:])
s = ServedProcess(None, env)
s.wait_ready()
m = MemorySource(pid=s.process.pid)


def show(what):
    print(
        f"{what}: RSS {m.rss_mb():.1f} MiB, heap {parse_heap(httpx.get(s.url + '/metrics').text)}", flush=True
    )


show("ready")
text = " ".join(["987654321987"] * 23)  # one 'sentence' of 298 chars that normalizes to many words
for i in range(4):
    t0 = time.time()
    r = httpx.post(s.url + "/v1/audio/speech", json={"input": text, "response_format": "pcm"}, timeout=900)
    show(
        f"#{i} {len(text)} chars of digits -> {r.status_code}, {len(r.content) / 32000:.1f} s audio in {time.time() - t0:.0f} s"
    )
s.stop()
