"""Does batching reference requests pay? The bundle's ``teacher_block`` graph, several utterances at once.

    python -m bench.teacher_batch --voice voices/flite [--batches 1,2,4] [--frames 10]
                                         [--repeats 3] [--seed 0]

The engine generates each reference request on its own: the voice's one ``teacher_block`` session,
with a static batch of 1 (``batch_one``: ONNX Runtime folds every shape on the batch dimension) and
one intra-op thread, called from each request's own inference thread (``InferenceSession.run`` runs
concurrently), so two requests run on two cores.
The alternative is one step loop for several requests: a batch-B call advances B utterances by the
same frames. This prints, for each B, the samples/s of

- ``batched``: one dynamic-batch session, one thread, a (B, ...) call -- all requests in one loop;
- ``parallel``: the engine's static batch-1 session run from B threads at once, each on its own
  request -- what the engine does today when B requests arrive together;

in total and per request (a request's own speed: its real-time factor is the sample rate / that). Batching
pays where ``batched`` total beats ``parallel`` total, i.e. when there are more concurrent requests
than cores. Values are random (speed does not depend on them); ``--frames`` mel frames per call, as
the engine's calibrated calls.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import threading
import time
from pathlib import Path

import numpy as np

from service.sessions import CPU, Graph
from service.types import EngineLoadError
from service.voice import Voice

log = logging.getLogger(__name__)


def block_feeds(graph: Graph, batch: int, frames: int, hop: int, seed: int) -> list[np.ndarray]:
    """Random feeds of one ``teacher_block`` call for ``batch`` utterances, in the spec's input order."""
    rng = np.random.default_rng(seed)
    cond_channels = graph.inputs["cond"].shape[1]
    feeds = {
        "cond": 0.1 * rng.standard_normal((batch, cond_channels, frames + 2), dtype=np.float32),
        "excitation": rng.uniform(-1.0, 1.0, (batch, 3, frames * hop)).astype(np.float32),
        "noise": 0.4 * rng.standard_normal((batch, frames * hop), dtype=np.float32),
        "x_prev": np.zeros((batch, 1), np.float32),
    }
    for name, spec in graph.inputs.items():
        if name.startswith("state_"):
            feeds[name] = 0.1 * rng.standard_normal((batch, *spec.shape[1:]), dtype=np.float32)
    return [feeds[name] for name in graph.spec.input_names]


def rows_of(feeds: list[np.ndarray], b: int) -> list[np.ndarray]:
    """Row ``b`` of every feed, as a batch of one."""
    return [f[b : b + 1] for f in feeds]


def time_call(graph: Graph, feeds: list[np.ndarray], repeats: int) -> float:
    """Best wall seconds of ``repeats`` calls (after one untimed call)."""
    graph.run(*feeds)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        graph.run(*feeds)
        best = min(best, time.perf_counter() - t0)
    return best


def time_parallel(graphs: list[Graph], feeds: list[list[np.ndarray]], repeats: int) -> float:
    """Best wall seconds of ``graphs[i].run(*feeds[i])`` for all i at once, one thread each (the
    same graph may appear several times: concurrent runs of one session)."""
    for g, f in zip(graphs, feeds, strict=True):
        g.run(*f)
    best = float("inf")
    for _ in range(repeats):
        start = threading.Barrier(len(graphs) + 1)

        def one(graph: Graph, f: list[np.ndarray], barrier: threading.Barrier = start) -> None:
            barrier.wait()
            graph.run(*f)

        threads = [threading.Thread(target=one, args=(g, f)) for g, f in zip(graphs, feeds, strict=True)]
        for t in threads:
            t.start()
        start.wait()
        t0 = time.perf_counter()
        for t in threads:
            t.join()
        best = min(best, time.perf_counter() - t0)
    return best


def run(voice_dir: Path, batches: list[int], frames: int, repeats: int, seed: int) -> list[str]:
    voice = Voice.load(voice_dir)  # the engine's own loading: ``served`` is the session it runs
    served = voice.teacher_block
    if served is None:
        raise SystemExit(f"{voice_dir}: this bundle has no teacher")
    hop = voice.hop
    dynamic = Graph("teacher_block", served.path, [CPU], 1)  # the same graph, batch left dynamic
    lines = [
        f"bench_teacher_batch: {voice_dir}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, {frames} frames ({frames * hop} samples) per call, best of {repeats}",
        f"{'B':>3}  {'how':<9}  {'total samples/s':>15}  {'per request':>11}",
    ]
    for b in batches:
        feeds = block_feeds(dynamic, b, frames, hop, seed)
        t = time_call(dynamic, feeds, repeats)
        lines.append(f"{b:>3}  {'batched':<9}  {b * frames * hop / t:>15,.0f}  {frames * hop / t:>11,.0f}")
        t = time_parallel([served] * b, [rows_of(feeds, i) for i in range(b)], repeats)
        lines.append(f"{b:>3}  {'parallel':<9}  {b * frames * hop / t:>15,.0f}  {frames * hop / t:>11,.0f}")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--voice", type=Path, default=Path("voices/flite"), help="Voice bundle folder.")
    parser.add_argument("--batches", default="1,2,4", help="Comma-separated batch sizes.")
    parser.add_argument("--frames", type=int, default=10, help="Mel frames per call.")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        batches = [int(b) for b in args.batches.split(",") if b.strip()]
    except ValueError:
        raise SystemExit(f"--batches must be comma-separated integers, got {args.batches!r}") from None
    if not batches or min(batches) < 1 or args.frames < 1 or args.repeats < 1:
        raise SystemExit("--batches, --frames and --repeats must be positive")
    try:
        lines = run(args.voice, batches, args.frames, args.repeats, args.seed)
    except EngineLoadError as exc:
        raise SystemExit(str(exc)) from None
    for line in lines:
        log.info(line)


if __name__ == "__main__":
    main()
