"""The C heap of the server process: glibc malloc's arena limit and its statistics (ctypes; torch-free).

Why. Every thread that allocates while another holds the main heap's lock gets a malloc arena of its
own, up to 8 per core by default (16 on two cores). The server allocates from many threads: the event
loop, anyio's worker threads (encoders, up to 40, which come and go), the inference pool, the student's
piece pool and ONNX Runtime. Each arena keeps the memory its threads freed for later use by its own
threads, in holes between blocks still in use; across 16 arenas those holes add up, and RSS climbs
request after request although the memory in use stays flat. Measured with ``parawave soak`` (see
``recipes/reports/memory-soak``): the C heap in use stayed at ~90 MiB while its free-but-kept part grew
from 9 to 45 MiB in 384 mixed requests. Fewer arenas share their holes: :func:`limit_arenas` sets
``M_ARENA_MAX`` (``PARAWAVE_MALLOC_ARENA_MAX``) at start, before the serving threads exist.

:func:`heap_stats` (``mallinfo2``) is exported as ``parawave_malloc_*`` gauges in ``/metrics``, so a soak
can tell a leak (in use grows) from fragmentation (free grows). Off glibc (musl, macOS) both are no-ops.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import platform
from dataclasses import dataclass
from functools import cache

log = logging.getLogger(__name__)

M_ARENA_MAX = -8  # mallopt parameter (malloc.h)


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",  # bytes in the heaps from sbrk/mmap'ed arenas (not the large mmap'ed blocks)
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",  # bytes in large blocks mmap'ed one by one
            "usmblks",
            "fsmblks",
            "uordblks",  # bytes in use
            "fordblks",  # bytes free but kept in the heaps
            "keepcost",
        )
    ]


@dataclass(frozen=True)
class HeapStats:
    in_use: int  # bytes handed out from the arenas
    free: int  # bytes freed but kept in the arenas (fragmentation shows here)
    arenas: int  # bytes the arenas hold (in_use + free, roughly)
    mmapped: int  # bytes in large blocks mmap'ed one by one (returned to the OS on free)


@cache
def _glibc() -> ctypes.CDLL | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.mallopt.restype = ctypes.c_int
    if hasattr(libc, "mallinfo2"):  # glibc >= 2.33
        libc.mallinfo2.restype = _MallInfo2
    return libc


def limit_arenas(n: int | None) -> bool:
    """At most ``n`` malloc arenas from now on (None or 0: leave glibc's default). True when set."""
    libc = _glibc()
    if not n or libc is None:
        return False
    ok = bool(libc.mallopt(M_ARENA_MAX, int(n)))
    if ok:
        log.debug("malloc arenas limited to %d", n)
    else:
        log.warning("mallopt(M_ARENA_MAX, %d) failed", n)
    return ok


def heap_stats() -> HeapStats | None:
    """glibc's view of the C heap, None where there is no ``mallinfo2``."""
    libc = _glibc()
    if libc is None or not hasattr(libc, "mallinfo2"):
        return None
    m = libc.mallinfo2()
    return HeapStats(in_use=m.uordblks, free=m.fordblks, arenas=m.arena, mmapped=m.hblkhd)
