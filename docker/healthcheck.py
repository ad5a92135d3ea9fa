"""Container health check: exit 0 when the local parawave server is ready, 1 otherwise.

Run by the images' HEALTHCHECK (and the compose healthchecks). Standard library only; asks
``GET /health/ready`` on 127.0.0.1 at the server's own ``PARAWAVE_PORT``, without any HTTP proxy
from the environment. Ready = voices loaded and warmed up (503 before that, or if warm-up failed).
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request


def main() -> int:
    port = os.environ.get("PARAWAVE_PORT", "8000")
    url = f"http://127.0.0.1:{port}/health/ready"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=float(os.environ.get("PARAWAVE_HEALTHCHECK_TIMEOUT_S", "4"))) as r:
            print(f"ready: {r.read(300).decode(errors='replace')}")
            return 0
    except urllib.error.HTTPError as exc:
        print(f"not ready: HTTP {exc.code}: {exc.read(300).decode(errors='replace')}")
    except (OSError, ValueError) as exc:
        print(f"not ready: {url}: {exc}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
