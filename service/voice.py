"""One voice bundle loaded for inference (torch-free): manifest, symbols, speakers, ONNX Runtime
sessions, and what each graph does for one utterance or a batch of them.

    ids --acoustic--> log-mel (n_mels, F), F0 (F,), durations; F0 --> excitation (3, F*hop), once
    log-mel + excitation + noise --student, one pass--> audio          (:meth:`Voice.vocode`)
    log-mel + excitation --teacher_cond, then teacher_block a few frames per call--> audio pieces
                                                                       (``service.teacher``)

The teacher always runs on the CPU (a chain of ~200 tiny kernels per sample: a GPU kernel launch
costs more than the CPU's arithmetic); with CUDA first, the fp16 student when the bundle ships one.
On the CPU an utterance goes through the student in pieces of at most :data:`STUDENT_CHUNK_FRAMES`
(each with the bundle's context frames around it, cut back out, so the audio equals one whole run),
which keeps the activations in cache; one utterance's pieces run in parallel on a small shared pool
(``student_threads``: default the CPUs this process may use, at most 8; 1 = sequential).
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from core.excitation import EXCITATION_CHANNELS, excitation
from service import bundle as bundle_io
from service import graphs
from service.sessions import ARENA_MAX_FRAMES, ARENA_MAX_PHONEMES, CPU, CUDA, Graph, provider_name
from service.teacher import TeacherLoop
from service.types import CancelFlag, EngineLoadError, InputError, ModelKind, VoiceInfo

if TYPE_CHECKING:
    from model.text import SymbolTable
    from model.text.lexicon import Lexicon

log = logging.getLogger(__name__)

# CPU: the student runs long utterances in pieces of this many frames (+ context), which keeps its
# activations in cache: measured 0.071-0.072 CPU s per audio s at 96-160 frames vs 0.096 for a
# whole 6 s utterance (cpu preset, 1 thread). Pieces only when the context is small beside them.
STUDENT_CHUNK_FRAMES = 128
MAX_PIECE_THREADS = 8
WARMUP_PHONEMES = (8, 32, 128)  # acoustic length buckets
WARMUP_FRAMES_CUDA = (64, 256, 1024)  # student length buckets on CUDA (0.8 s, 3.2 s, 12.8 s)
WARMUP_BATCHES_CUDA = (1, 4, 8)


class Voice:
    """One loaded voice bundle: its manifest, symbol table, speakers and ONNX sessions."""

    def __init__(
        self,
        path: Path,
        manifest: bundle_io.VoiceBundle,
        graphs_: dict[str, Graph],
        *,
        student_threads: int | None = None,
        teacher_frames_per_call: int | None = None,
        teacher_temperature: float | None = None,
    ):
        self.path = path
        self.manifest = manifest
        self.name = manifest.name
        self.sample_rate = manifest.sample_rate
        self.hop = manifest.audio.hop_length
        self.n_mels = manifest.audio.n_mels
        self._symbols: SymbolTable | None = None
        self.lexicon: Lexicon | None = None  # pronunciation lexicon (Voice.load), applied before G2P
        self.speakers = tuple(manifest.speakers)
        self._speaker_ids = {s: i for i, s in enumerate(self.speakers)}
        self.graphs = graphs_
        self.acoustic = graphs_["acoustic"]
        self.student = graphs_.get("student")
        self.teacher_cond = graphs_.get("teacher_cond")
        self.teacher_block = graphs_.get("teacher_block")
        self.models: tuple[ModelKind, ...] = tuple(manifest.models)  # type: ignore[assignment]
        left, right = manifest.context.get("student", (None, None))
        self.chunk_frames: int | None = None  # student pieces (CPU), None = whole utterances
        if (
            self.student is not None
            and self.student.provider == CPU
            and left is not None
            and 4 * (left + right) <= STUDENT_CHUNK_FRAMES
        ):
            self.chunk_frames = STUDENT_CHUNK_FRAMES
        self._context = (left or 0, right or 0)
        # a piece is at least 4x its context frames (the context is recomputed for every piece)
        self._min_piece = max(8, 4 * (self._context[0] + self._context[1]))
        # CPU student pieces
        self.piece_threads = default_piece_threads(student_threads) if self.chunk_frames else 1
        # the deployment's override, else the bundle's measured default (voice.json "inference")
        self.teacher_temperature = (
            manifest.inference.teacher_temperature
            if teacher_temperature is None
            else float(teacher_temperature)
        )
        self.teacher_loop: TeacherLoop | None = None  # the teacher's generation (service.teacher)
        if self.teacher_cond is not None and self.teacher_block is not None:
            self.teacher_loop = TeacherLoop(
                self.teacher_cond, self.teacher_block, self.hop, teacher_frames_per_call
            )

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        providers: Sequence[str | tuple[str, dict]] = (CPU,),
        *,
        intra_op_threads: int | None = None,
        prefer_fp16: bool = True,
        student_threads: int | None = None,
        ort_spin: bool = False,
        teacher_frames_per_call: int | None = None,
        teacher_temperature: float | None = None,
        lexicon: str | os.PathLike | None = None,
        voice_lexicons: Mapping[str, str | os.PathLike] | None = None,
    ) -> Voice:
        """Load ``path`` (a bundle folder): verify it, open its sessions on ``providers`` (the
        teacher always on the CPU). With CUDA first and ``prefer_fp16``, fp16 variants are used
        when the bundle has them. ``lexicon`` (server-wide) and ``voice_lexicons[<voice name>]``
        (this voice's, winning over the server-wide entries) are pronunciation lexicon files,
        checked against the voice's symbols. The other knobs: see ``service.loading``."""
        path = Path(path)
        manifest = bundle_io.load(path)
        providers = list(providers)
        on_cuda = provider_name(providers[0]) == CUDA
        loaded: dict[str, Graph] = {}
        for role in ("acoustic", "student"):
            if role not in manifest.files:
                continue
            file_role = (
                f"{role}_fp16" if on_cuda and prefer_fp16 and f"{role}_fp16" in manifest.files else role
            )
            loaded[role] = Graph(
                file_role, path / manifest.files[file_role].path, providers, intra_op_threads, spin=ort_spin
            )
        if "teacher" in manifest.models:
            loaded["teacher_cond"] = Graph(
                "teacher_cond",
                path / manifest.files["teacher_cond"].path,
                [CPU],
                intra_op_threads,
                spin=ort_spin,
            )
            loaded["teacher_block"] = Graph(
                "teacher_block",
                path / manifest.files["teacher_block"].path,
                [CPU],
                1,
                batch_one=True,
                spin=ort_spin,
            )
        voice = cls(
            path,
            manifest,
            loaded,
            student_threads=student_threads,
            teacher_frames_per_call=teacher_frames_per_call,
            teacher_temperature=teacher_temperature,
        )
        for role, g in loaded.items():
            log.info("voice %s: %s (%s) runs on %s", voice.name, role, g.path.name, g.provider)
        mine = (voice_lexicons or {}).get(voice.name)
        if lexicon or mine:
            voice.lexicon = voice.load_lexicons([p for p in (lexicon, mine) if p])
        return voice

    def load_lexicons(self, paths: Sequence[str | os.PathLike]) -> Lexicon:
        """The lexicon files merged in order (a later file wins on a word); EngineLoadError (one line,
        naming the file, line and entry) when one is invalid for this voice's symbols."""
        from model.text.lexicon import Lexicon, LexiconError, load_lexicon

        merged = Lexicon()
        for p in paths:
            try:
                merged = merged.merged(load_lexicon(p, self.symbols))
            except LexiconError as exc:
                raise EngineLoadError(f"voice {self.name}: {exc}") from None
            log.info("voice %s: lexicon %s", self.name, p)
        return merged

    @property
    def symbols(self) -> SymbolTable:
        """The phoneme table (the text front end, ``model.text``, is imported on first use: the
        graphs run without it, e.g. ``parawave bench`` on a GPU host that lacks its packages)."""
        if self._symbols is None:
            from model.text import SymbolTable

            self._symbols = SymbolTable.from_dict(self.manifest.symbols)
        return self._symbols

    @property
    def n_symbols(self) -> int:
        return len(self.manifest.symbols.get("symbols", ())) or 2

    @property
    def info(self) -> VoiceInfo:
        return VoiceInfo(
            self.name,
            self.sample_rate,
            self.speakers,
            self.models,
            self.manifest.inference.hd_model,
            blendable=self.blendable,
        )

    @property
    def blendable(self) -> bool:
        """Whether this voice can mix its speakers: several of them, and graphs that take speaker
        weights (bundle format 3; a format 2 bundle's graphs take ids)."""
        return len(self.speakers) > 1 and all(
            graphs.SPEAKER_WEIGHTS in g.spec.input_names
            for g in (self.acoustic, self.student, self.teacher_cond)
            if g is not None
        )

    def blend_weights(self, blend: Sequence[tuple[str, float]]) -> np.ndarray:
        """A blend ``((speaker, weight), ...)`` -> weights (S,) summing to 1, in the bundle's speaker order."""
        if not self.blendable:
            why = (
                "it has one speaker" if len(self.speakers) < 2 else "its bundle predates blending (format 2)"
            )
            raise InputError(f"voice {self.name!r} cannot blend speakers: {why}")
        w = np.zeros(len(self.speakers), np.float64)
        for name, weight in blend:
            if not (math.isfinite(weight) and weight > 0):
                raise InputError(f"blend weight of {name!r} must be a positive number, got {weight!r}")
            w[self.speaker_id(name)] += weight
        return (w / w.sum()).astype(np.float32)  # (S,)

    def speaker_feed(self, graph: Graph, speakers: Sequence[int | np.ndarray]) -> np.ndarray:
        """The ``graph``'s speaker input for rows of speaker ids or weight vectors (S,): weights (B, S)
        float32 (one-hot for an id) for a format 3 graph, ids (B,) int64 for a format 2 one."""
        if graphs.SPEAKER_WEIGHTS in graph.spec.input_names:
            out = np.zeros((len(speakers), len(self.speakers)), np.float32)  # (B, S)
            for b, spk in enumerate(speakers):
                if isinstance(spk, np.ndarray):
                    out[b] = spk
                else:
                    out[b, int(spk)] = 1.0
            return out
        if any(isinstance(spk, np.ndarray) for spk in speakers):
            raise InputError(f"voice {self.name!r} cannot blend speakers (its bundle is format 2)")
        return np.asarray(speakers, np.int64)  # (B,)

    def speaker_id(self, name: str) -> int:
        try:
            return self._speaker_ids[name]
        except KeyError:
            raise InputError(
                f"voice {self.name!r} has no speaker {name!r} (speakers: {', '.join(self.speakers)})"
            ) from None

    # -- acoustic ---------------------------------------------------------------------------------

    def features(
        self,
        ids: Sequence[np.ndarray],
        speakers: Sequence[int | np.ndarray],
        speeds: Sequence[float],
        pitches: Sequence[float] | None = None,
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Phoneme ids of several utterances -> (log-mel (n_mels, F_b), F0 (F_b,) Hz, 0 = unvoiced)
        each, in one batched run; ``pitches`` in semitones (default 0)."""
        return [(mel, f0) for mel, f0, _ in self.features_timed(ids, speakers, speeds, pitches)]

    def features_timed(
        self,
        ids: Sequence[np.ndarray],
        speakers: Sequence[int | np.ndarray],
        speeds: Sequence[float],
        pitches: Sequence[float] | None = None,
    ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """:meth:`features` plus each utterance's durations (L_b,) in mel frames per phoneme id
        (they sum to F_b: the word timings, ``service.timing``)."""
        B, L = len(ids), max(len(x) for x in ids)
        phonemes = np.zeros((B, L), np.int64)  # (B, L), 0 = pad
        for b, x in enumerate(ids):
            phonemes[b, : len(x)] = x
        lengths = np.array([len(x) for x in ids], np.int64)
        pitch = np.zeros(B, np.float32) if pitches is None else np.asarray(pitches, np.float32)
        feeds = (
            phonemes,
            lengths,
            self.speaker_feed(self.acoustic, speakers),
            np.asarray(speeds, np.float32),
            pitch,
        )
        if self.acoustic.provider == CUDA:
            outputs = self.acoustic.run_bound(*feeds)
        else:
            outputs = self.acoustic.run(*feeds, shrink_arena=B * L > ARENA_MAX_PHONEMES)
        mel, durations, frames, f0 = outputs  # (B, n_mels, F), (B, L), (B,), (B, F)
        return [
            (mel[b, :, : int(frames[b])], f0[b, : int(frames[b])], durations[b, : len(ids[b])])
            for b in range(B)
        ]

    def mels(
        self, ids: Sequence[np.ndarray], speakers: Sequence[int | np.ndarray], speeds: Sequence[float]
    ) -> list[np.ndarray]:
        """Phoneme ids of several utterances -> one log-mel (n_mels, F_b) each (see :meth:`features`)."""
        return [mel for mel, _ in self.features(ids, speakers, speeds)]

    # -- student ----------------------------------------------------------------------------------

    def excitation(self, f0: np.ndarray | None, frames: int) -> np.ndarray:
        """The vocoders' excitation (3, frames*hop) of one whole utterance (phase from its start);
        None = unvoiced throughout."""
        if f0 is None:
            return np.zeros((EXCITATION_CHANNELS, frames * self.hop), np.float32)
        return excitation(f0[:frames], self.hop, self.sample_rate)

    def vocode(
        self,
        mels: Sequence[np.ndarray],
        speakers: Sequence[int | np.ndarray],
        noise: Sequence[np.ndarray],
        f0s: Sequence[np.ndarray | None] | None = None,
    ) -> list[np.ndarray]:
        """The student on several mels at once: mels (n_mels, F_b), noise (F_b * hop,), F0 (F_b,) Hz
        (None: unvoiced) -> audio (F_b * hop,).

        Rows are padded to the longest (mel: its last frame repeated; noise and excitation: zeros),
        run in one session call and trimmed. Samples depend only on the past noise and the
        conditioning, which looks ahead two frames, so a padded row differs from running it alone
        only in its last two frames.
        """
        assert self.student is not None
        f0s = list(f0s) if f0s is not None else [None] * len(mels)
        excs = [self.excitation(f, m.shape[1]) for f, m in zip(f0s, mels, strict=True)]  # (3, F_b*hop)
        if self.chunk_frames is not None and (
            len(mels) == 1 or max(m.shape[1] for m in mels) > self.chunk_frames * 5 // 4
        ):
            return [
                self.vocode_pieces(m, s, z, self.piece_frames(m.shape[1]), excitation=e)
                for m, s, z, e in zip(mels, speakers, noise, excs, strict=True)
            ]
        B, F = len(mels), max(m.shape[1] for m in mels)
        mel = np.empty((B, self.n_mels, F), np.float32)
        z = np.zeros((B, F * self.hop), np.float32)
        exc = np.zeros((B, EXCITATION_CHANNELS, F * self.hop), np.float32)
        for b, m in enumerate(mels):
            n = m.shape[1]
            mel[b, :, :n] = m
            mel[b, :, n:] = m[:, -1:]
            z[b, : n * self.hop] = noise[b]
            exc[b, :, : n * self.hop] = excs[b]
        feeds = (z, mel, self.speaker_feed(self.student, speakers), exc)
        if self.student.provider == CUDA:
            audio = self.student.run_bound(*feeds)[0]  # (B, F*hop)
        else:
            audio = self.student.run(*feeds, shrink_arena=B * F > ARENA_MAX_FRAMES)[0]
        return [audio[b, : m.shape[1] * self.hop] for b, m in enumerate(mels)]

    def vocode_pieces(
        self,
        mel: np.ndarray,
        speaker: int | np.ndarray,
        noise: np.ndarray,
        frames: int | None = None,
        excitation: np.ndarray | None = None,
    ) -> np.ndarray:
        """One utterance through the student in pieces of ``frames`` (default ``chunk_frames``):
        each piece runs with the bundle's context frames around it and is cut back out, so the
        result equals one whole run (up to float rounding). ``excitation`` (3, F*hop) of the whole
        utterance (None: unvoiced) is sliced like the noise, so its phase is the one-pass phase."""
        assert self.student is not None
        frames = frames or self.chunk_frames or mel.shape[1]
        left, right = self._context
        F, hop = mel.shape[1], self.hop
        spk = self.speaker_feed(self.student, [speaker])  # (1, S) weights or (1,) id
        exc = self.excitation(None, F) if excitation is None else excitation  # (3, F*hop)

        def piece(a: int) -> np.ndarray:
            b = min(F, a + frames)
            lo, hi = max(0, a - left), min(F, b + right)
            audio = self.student.run(
                noise[None, lo * hop : hi * hop], mel[None, :, lo:hi], spk, exc[None, :, lo * hop : hi * hop]
            )[0]  # (1, T)
            return audio[0, (a - lo) * hop : (b - lo) * hop]

        starts = range(0, F, frames)
        if len(starts) > 1 and self.piece_threads > 1:
            return np.concatenate(list(_piece_pool(self.piece_threads).map(piece, starts)))
        return np.concatenate([piece(a) for a in starts])

    def piece_frames(self, frames: int) -> int:
        """The piece length for an utterance of ``frames`` on the CPU: at most ``chunk_frames``, and
        cut so that the pieces keep ``piece_threads`` threads busy (a multiple of them) while each
        stays at least 4x its context."""
        chunk = self.chunk_frames or frames
        n = 1 if frames <= chunk * 5 // 4 else math.ceil(frames / chunk)
        threads = self.piece_threads
        if threads > 1:
            n = max(n, min(threads, frames // self._min_piece))
            if n > 1:
                rounded = threads * math.ceil(n / threads)
                if frames // rounded >= self._min_piece:
                    n = rounded
        return math.ceil(frames / max(1, n))

    # -- teacher ----------------------------------------------------------------------------------

    def teacher(
        self,
        mel: np.ndarray,
        speaker: int | np.ndarray,
        rng: np.random.Generator,
        cancel: CancelFlag | None = None,
        temperature: float | None = None,
        f0: np.ndarray | None = None,
    ) -> Iterator[tuple[np.ndarray, bool]]:
        """Autoregressive generation of mel (n_mels, F) [+ F0 (F,) Hz, None = unvoiced]: yields
        (audio piece, is the last piece).

        A few frames per ``teacher_block`` call (``service.teacher.TeacherLoop``), so ``cancel`` is
        looked at that often. Noise: temperature * N(0, 1) from ``rng`` (None: the voice's
        ``teacher_temperature``). The excitation is computed once for the whole utterance and sliced
        per call, so the pieces equal one call over all frames.
        """
        assert self.teacher_loop is not None and self.teacher_cond is not None
        if temperature is None:
            temperature = self.teacher_temperature
        spk = self.speaker_feed(self.teacher_cond, [speaker])
        yield from self.teacher_loop.generate(
            mel, spk, rng, cancel, temperature, lambda frames: self.excitation(f0, frames)
        )

    def smoke_test(self) -> None:
        """One short utterance through the acoustic model and the student (raises what they raise)."""
        ids = np.arange(1, 9, dtype=np.int64) % max(2, self.n_symbols - 1) + 1  # 8 phoneme ids
        mel, f0 = self.features([ids], [0], [1.0])[0]
        if self.student is not None:
            self.vocode([mel], [0], [np.zeros(mel.shape[1] * self.hop, np.float32)], [f0])

    def warmup(self, max_batch: int = 8) -> None:
        """Run every graph over the expected shapes (CUDA: length buckets x batch sizes)."""
        rng = np.random.default_rng(0)
        ids_len = WARMUP_PHONEMES
        mel = None
        for n in ids_len:
            ids = rng.integers(1, self.n_symbols, n).astype(np.int64)
            mel, f0 = self.features([ids], [0], [1.0])[0]
            if self.student is not None:
                z = rng.standard_normal(mel.shape[1] * self.hop).astype(np.float32)
                self.vocode([mel], [0], [z], [f0])
        if self.student is not None and self.student.provider == CUDA:
            for frames in WARMUP_FRAMES_CUDA:
                for b in WARMUP_BATCHES_CUDA:
                    if b > max_batch:
                        continue
                    m = np.full((self.n_mels, frames), -5.0, np.float32)
                    z = [np.zeros(frames * self.hop, np.float32)] * b
                    self.vocode([m] * b, [0] * b, z)
        if self.teacher_block is not None and mel is not None:
            # calibrates frames per call
            for i, _ in enumerate(self.teacher(mel[:, :4], 0, rng, f0=f0[:4])):
                if i >= 2:
                    break


_pool_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_pool_threads = 0


def _piece_pool(threads: int) -> ThreadPoolExecutor:
    """The process-wide pool the CPU student pieces run on (grown to ``threads`` when asked)."""
    global _pool, _pool_threads
    with _pool_lock:
        if _pool is None or _pool_threads < threads:
            old, _pool = _pool, ThreadPoolExecutor(threads, thread_name_prefix="parawave-piece")
            _pool_threads = threads
            if old is not None:
                old.shutdown(wait=False)
        return _pool


def default_piece_threads(requested: int | None = None) -> int:
    """``requested`` (the ``student_threads`` setting) when set and not 0, else the CPUs this process
    may run on (at most 8)."""
    if requested:
        return requested
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(MAX_PIECE_THREADS, cpus))
