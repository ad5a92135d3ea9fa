"""The load-test tests reuse the service tests' fake engine and live uvicorn server."""

from __future__ import annotations

import sys
from pathlib import Path

SERVICE_TESTS = Path(__file__).resolve().parents[1] / "service"
if str(SERVICE_TESTS) not in sys.path:
    sys.path.insert(0, str(SERVICE_TESTS))
