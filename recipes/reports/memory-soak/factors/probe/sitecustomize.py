# Diagnostic only (issue 40): the server process logs glibc malloc statistics every 2 s to $MALLOC_PROBE_OUT
# (mallinfo2: heap in use / free / mmapped; malloc_info: number of arenas). Put this folder on PYTHONPATH.
import ctypes
import os
import threading
import time
from pathlib import Path

_out = os.environ.get("MALLOC_PROBE_OUT")
if _out:

    class _MI2(ctypes.Structure):
        _fields_ = [
            (n, ctypes.c_size_t)
            for n in (
                "arena",
                "ordblks",
                "smblks",
                "hblks",
                "hblkhd",
                "usmblks",
                "fsmblks",
                "uordblks",
                "fordblks",
                "keepcost",
            )
        ]

    _libc = ctypes.CDLL("libc.so.6")
    _libc.mallinfo2.restype = _MI2
    _libc.fopen.restype = ctypes.c_void_p
    _libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    _libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
    _libc.fclose.argtypes = [ctypes.c_void_p]

    def _loop():
        with open(_out, "w") as f:
            f.write("t\trss_mb\tarena_mb\tmmap_mb\tinuse_mb\tfree_mb\tthreads\tarenas\n")
            t0 = time.time()
            while True:
                m = _libc.mallinfo2()
                rss = thr = 0
                for line in Path("/proc/self/status").read_text().splitlines():
                    if line.startswith("VmRSS"):
                        rss = int(line.split()[1]) / 1024
                    if line.startswith("Threads"):
                        thr = int(line.split()[1])
                # count arenas: malloc_info XML would do; approximate with number of 'heap' mappings
                arenas = -1
                try:
                    fp = _libc.fopen(_out.encode() + b".xml", b"w")
                    _libc.malloc_info(0, fp)
                    _libc.fclose(fp)
                    arenas = Path(_out + ".xml").read_text().count("<heap nr=")
                except Exception:
                    pass
                f.write(
                    f"{time.time() - t0:.1f}\t{rss:.1f}\t{m.arena / 2**20:.1f}\t{m.hblkhd / 2**20:.1f}\t{m.uordblks / 2**20:.1f}\t{m.fordblks / 2**20:.1f}\t{thr}\t{arenas}\n"
                )
                f.flush()
                time.sleep(2)

    threading.Thread(target=_loop, daemon=True, name="malloc-probe").start()
