"""The ONNX Runtime inference engine (torch-free): voice bundles -> audio chunks.

    text --model.text: split_sentences, normalize, phonemize, encode--> phoneme ids per sentence
         --acoustic graph--> log-mel (n_mels, F), F0 (F,) --> excitation (3, F*hop), once per utterance
         --student graph (noise z from a seeded numpy RNG, one pass)--> F*hop samples   (one chunk per sentence)
         --teacher: teacher_cond once, then teacher_block a few frames per call-->      (small chunks)
           (both vocoders get their slice of the utterance's excitation, beside the mel)

:func:`load_engine` is what the service calls (``service.state.default_engine_loader``);
:class:`Voice` is one loaded bundle with its sessions; :class:`OnnxEngine` implements
``service.types.SpeechEngine``.

Providers. ``device="cuda"`` (or ``"auto"`` when onnxruntime has it) runs the acoustic model and
the student on the CUDA provider (cuDNN heuristic algorithm search, a memory limit, the fp16
student when the bundle ships one, I/O binding) with the CPU provider as fallback for unsupported
nodes; otherwise everything runs on the CPU provider. The teacher always runs on the CPU: its
generation is a chain of ~200 tiny kernels per sample, where a GPU kernel launch costs more than
the CPU's arithmetic. The provider a session actually got (``get_providers()[0]``, which is what
runs when the CUDA provider failed to load) is logged and reported by :attr:`OnnxEngine.providers`.

Threading. ``InferenceSession.run`` is safe to call from several threads at once; every request
has its own numpy RNG; the one piece of shared mutable state (the teacher's calibrated frames per
call, unless ``teacher_frames_per_call`` fixes it) is guarded by a lock. ``synthesize``/``synthesize_batch`` are lazy generators.

CPU student pieces. On the CPU an utterance goes through the student in pieces (each with the
bundle's context frames around it, cut back out, so the audio equals one whole run): pieces of at
most :data:`STUDENT_CHUNK_FRAMES` keep the activations in cache, and the pieces of one utterance run
in parallel on a small shared pool, so that one request uses every core (a session runs single-
threaded: ONNX Runtime's intra-op threads barely pay on these small ops).

Knobs (arguments of :func:`load_engine`; the service takes them from ``service.settings.Settings``,
that is ``PARAWAVE_<NAME>`` or ``.env``): ``student_threads`` (parallel student pieces on the CPU;
default the CPUs this process may use, at most 8; 1 = sequential), ``intra_op_threads`` (CPU threads
per session; default 1, see :data:`DEFAULT_INTRA_OP_THREADS`; 0 = ONNX Runtime's choice, one per
physical core), ``ort_spin`` (let idle ORT threads spin: lower latency on a dedicated machine, wasted
cores on a shared one; default off), ``gpu_mem_limit_mb`` (CUDA arena limit per session, default no
limit), ``teacher_frames_per_call`` (mel frames per teacher_block call; default calibrated from the
measured speed, see :data:`TEACHER_CALL_SECONDS`), ``teacher_temperature`` (the teacher's sampling
temperature; default the bundle's ``inference.teacher_temperature``).
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from core.excitation import EXCITATION_CHANNELS, excitation
from service import bundle as bundle_io
from service import graphs, timing
from service.types import (
    MAX_PITCH,
    MIN_PITCH,
    AudioChunk,
    CancelFlag,
    EngineLoadError,
    InputError,
    ModelKind,
    PhonemeTiming,
    SynthesisRequest,
    VoiceInfo,
    WordTiming,
)

if TYPE_CHECKING:
    from model.text import SymbolTable
    from model.text.lexicon import Lexicon
    from model.text.normalize import NormalizationOptions

log = logging.getLogger(__name__)

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
MIN_SPEED, MAX_SPEED = 0.25, 4.0
TEACHER_CALL_SECONDS = 0.1  # aim for this much work per teacher_block call (cancel latency)
TEACHER_MAX_FRAMES = 64  # frames per teacher_block call at most
# One thread per session by default: on the shared 2-core dev box (load 4-5) `parawave bench` gave
# a text->audio RTF median of 0.08 with 1 thread vs 0.19 with 2 (an op split over threads waits
# for the slowest); requests scale out over sessions' callers (PARAWAVE_STUDENT_WORKERS) instead.
DEFAULT_INTRA_OP_THREADS = 1
STUDENT_PAD_WASTE = {CPU: 0.15, CUDA: 1.0}  # padding allowed in a batched student run, by provider
# CPU: the student runs long utterances in pieces of this many frames (+ context), which keeps its
# activations in cache: measured 0.071-0.072 CPU s per audio s at 96-160 frames vs 0.096 for a
# whole 6 s utterance (cpu preset, 1 thread). Pieces only when the context is small beside them.
STUDENT_CHUNK_FRAMES = 128
MAX_PIECE_THREADS = 8
WARMUP_PHONEMES = (8, 32, 128)  # acoustic length buckets
# ONNX Runtime's CPU arena keeps the peak of the largest input a session has seen, for good. Sentences
# are cut at 300 characters (model.text.split_sentences), but normalization can expand them many
# times (a 298-character sentence of 12-digit numbers: ~3000 phonemes), and one such request held
# ~0.7 GB more RSS after every repeat (recipes/reports/memory-soak). Runs above these lengths give the
# arena back what they took (ORT's arena shrinkage), so what the arena keeps is bounded by them.
ARENA_MAX_PHONEMES = 512  # acoustic model: phonemes per sentence
ARENA_MAX_FRAMES = 1024  # whole-utterance student runs and the teacher's conditioning: mel frames
WARMUP_FRAMES_CUDA = (64, 256, 1024)  # student length buckets on CUDA (0.8 s, 3.2 s, 12.8 s)
WARMUP_BATCHES_CUDA = (1, 4, 8)


# ------------------------------------------------------------------------------------- text


@dataclass(frozen=True)
class Sentence:
    text: str  # as split from the input
    span: tuple[int, int]  # [start, end) in the input
    ids: np.ndarray  # (L,) int64 phoneme ids, L >= 1
    normalized: str = ""  # what normalize() made of `text`
    phonemes: str = ""  # what the ids encode, one code point per id ("" when they differ)
    # markup (SSML prosody and breaks): on top of the request's speed and pitch, and silences around it
    rate: float = 1.0
    pitch: float = 0.0  # semitones
    pause_before: float = 0.0  # seconds
    pause_after: float = 0.0  # seconds


def prepare_text(text: str, table: SymbolTable) -> list[Sentence]:
    """Sentences with their phoneme ids; sentences with nothing to say are dropped.

    Raises InputError when nothing at all is left.
    """
    from model.text import normalize, phonemize, split_sentences
    from model.text.sentences import locate_sentence

    out: list[Sentence] = []
    pos = 0
    for s in split_sentences(text):
        span = locate_sentence(text, s, pos)
        pos = max(pos, span[1])
        normalized = normalize(s)
        phonemes = phonemize(normalized)
        ids = table.encode(phonemes)
        ids = [i for i in ids if i != table.pad_id]
        if not any(ch.isalnum() for ch in s) or not ids:
            continue
        if len(ids) != len(phonemes):
            phonemes = ""
        out.append(Sentence(s, span, np.asarray(ids, dtype=np.int64), normalized, phonemes))
    if not out:
        raise InputError("the input has nothing to speak after text normalization")
    return out


def needs_markup(text: str, lexicon: Lexicon | None, options: NormalizationOptions | None) -> bool:
    """Whether ``text`` goes through :func:`prepare_markup` (SSML, inline phonemes, a lexicon, options)."""
    from model.text.markup import has_markup

    return bool(lexicon) or (options is not None and not options.is_default) or has_markup(text)


def prepare_markup(
    text: str,
    table: SymbolTable,
    lexicon: Lexicon | None = None,
    options: NormalizationOptions | None = None,
) -> list[Sentence]:
    """:func:`prepare_text` for input with markup (``model.text.markup``: SSML, inline phonemes,
    lexicon entries, normalization options): sentences with their own rate, pitch and pauses.
    Raises InputError (with the position) on invalid markup, or when nothing is left to speak."""
    from model.text.markup import MarkupError, plan, spoken

    try:
        said = spoken(plan(text), table, lexicon, options)
    except MarkupError as exc:
        raise InputError(str(exc)) from None
    out = []
    for s in said:
        ids = [i for i in table.encode(s.phonemes) if i != table.pad_id]
        out.append(
            Sentence(
                s.text,
                s.span,
                np.asarray(ids, np.int64),
                rate=s.rate,
                pitch=s.pitch,
                pause_before=s.pause_before,
                pause_after=s.pause_after,
            )
        )
    if not out:
        raise InputError("the input has nothing to speak after text normalization")
    return out


def _silence(seconds: float, rate: int) -> np.ndarray:
    return np.zeros(round(seconds * rate), np.float32)  # (T,)


def _with_pauses(audio: np.ndarray, s: Sentence, rate: int) -> np.ndarray:
    """A sentence's audio with its markup pauses around it."""
    if not (s.pause_before or s.pause_after):
        return audio
    return np.concatenate([_silence(s.pause_before, rate), audio, _silence(s.pause_after, rate)])


# ------------------------------------------------------------------------------------- sessions


def _ort():
    try:
        import onnxruntime
    except ImportError as exc:
        raise EngineLoadError(
            f"onnxruntime is not installed ({exc}); pip install -e '.[cpu]' (or '.[gpu]' for CUDA)"
        ) from None
    return onnxruntime


def cuda_provider(mem_limit_mb: int | None = None) -> tuple[str, dict[str, Any]]:
    """The CUDA provider with our options: cuDNN heuristic conv search (no benchmarking per new
    shape), an arena that grows only by what is asked, an optional memory limit."""
    opts: dict[str, Any] = {
        "device_id": 0,
        "cudnn_conv_algo_search": "HEURISTIC",
        "arena_extend_strategy": "kSameAsRequested",
        "do_copy_in_default_stream": True,
    }
    if mem_limit_mb:
        opts["gpu_mem_limit"] = int(mem_limit_mb) * 1024 * 1024
    return CUDA, opts


def _first_line(exc: BaseException) -> str:
    """An exception as one line (onnxruntime's messages run to many): its first, else its type."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _provider_name(p: str | tuple[str, dict]) -> str:
    return p if isinstance(p, str) else p[0]


class Graph:
    """One InferenceSession plus its spec: feeds by name, checked interface, provider in use."""

    def __init__(
        self,
        role: str,
        path: Path,
        providers: Sequence,
        threads: int | None,
        batch_one: bool = False,
        spin: bool = False,
    ):
        ort = _ort()
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        if threads:
            so.intra_op_num_threads = threads
        # Idle intra-op threads busy-wait by default; on a CPU shared with other requests (or
        # processes) that burns cores: measured on the 2-core dev box under load, the cpu
        # student took 0.10 CPU s per audio s without spinning and 0.16 with it.
        so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        if batch_one:  # static batch: ORT folds every shape computation on the batch dimension
            so.add_free_dimension_override_by_name("batch", 1)
        try:
            self.session = ort.InferenceSession(str(path), so, providers=list(providers))
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/... types
            raise EngineLoadError(
                f"{path}: onnxruntime cannot load the {role} graph: {_first_line(exc)}"
            ) from None
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        self.spec = graphs.spec_for(role, [i.name for i in inputs])
        problem = self.spec.mismatch(inputs, outputs)
        if problem:
            raise EngineLoadError(f"{path}: {problem}")
        self.role = role
        self.path = path
        self.provider = self.session.get_providers()[0]
        self.inputs = {i.name: i for i in inputs}
        self._output_names = self.spec.output_names
        self._shrink: Any = None  # run options that give the CPU arena back after the run
        if self.provider == CPU:
            self._shrink = ort.RunOptions()
            self._shrink.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")

    def run(self, *feeds: np.ndarray, shrink_arena: bool = False) -> list[np.ndarray]:
        """The session on ``feeds`` (in the spec's input order); ``shrink_arena``: the CPU arena
        returns the memory this run took beyond what it held before (for outsized inputs)."""
        options = self._shrink if shrink_arena else None
        return self.session.run(
            self._output_names, dict(zip(self.spec.input_names, feeds, strict=True)), options
        )

    def run_bound(self, *feeds: np.ndarray) -> list[np.ndarray]:
        """Same as :meth:`run` through I/O binding (CUDA: inputs copied once, outputs to the host)."""
        binding = self.session.io_binding()
        for name, value in zip(self.spec.input_names, feeds, strict=True):
            binding.bind_cpu_input(name, np.ascontiguousarray(value))
        for name in self._output_names:
            binding.bind_output(name, "cpu")
        self.session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()


# ------------------------------------------------------------------------------------- a voice


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
        self._lock = threading.Lock()
        self.teacher_frames = teacher_frames_per_call  # frames per teacher_block call; None = calibrated
        # the deployment's override, else the bundle's measured default (voice.json "inference")
        self.teacher_temperature = (
            manifest.inference.teacher_temperature
            if teacher_temperature is None
            else float(teacher_temperature)
        )
        self._teacher_frame_seconds: float | None = None  # measured cost of one frame, teacher
        if self.teacher_block is not None:
            self._state_shapes = [
                (int(i.shape[1]), int(i.shape[2]))
                for name, i in self.teacher_block.inputs.items()
                if name.startswith("state_")
            ]

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
        checked against the voice's symbols. The other knobs: see the module's docstring."""
        path = Path(path)
        manifest = bundle_io.load(path)
        providers = list(providers)
        on_cuda = _provider_name(providers[0]) == CUDA
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

    def timings(
        self, text: str, sentence: Sentence, durations: np.ndarray, mel: np.ndarray | None = None
    ) -> tuple[list[WordTiming], list[PhonemeTiming]]:
        """A sentence's word and phoneme timings (seconds from its first sample) from its durations
        (and its mel (n_mels, F): where the sound starts inside the first phoneme, see
        ``service.timing.speech_bounds``); none when its phoneme string is unknown (:class:`Sentence`)."""
        if not sentence.phonemes:
            return [], []
        from model.text.wordmap import word_spans

        words = word_spans(text, sentence.span, sentence.normalized, sentence.phonemes)
        bounds = timing.speech_bounds(mel, durations) if mel is not None else None
        return timing.sentence_timings(
            words, sentence.phonemes, durations, self.hop / self.sample_rate, bounds
        )

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

    def plan_student_batches(self, frames: Sequence[int]) -> list[list[int]]:
        """Group rows (by index) into student runs: sorted by length, a row joins the current run
        while the padding stays under the provider's waste bound (CPU: ~none pays; CUDA: batching
        pays as long as the GPU is not full)."""
        waste = STUDENT_PAD_WASTE.get(self.student.provider if self.student else CPU, 0.15)
        order = sorted(range(len(frames)), key=lambda i: frames[i])
        groups: list[list[int]] = []
        for i in order:
            if groups:
                g = groups[-1]
                total = sum(frames[j] for j in g) + frames[i]
                if (len(g) + 1) * frames[i] <= (1.0 + waste) * total:  # frames[i] is the new max
                    g.append(i)
                    continue
            groups.append([i])
        return groups

    # -- teacher ----------------------------------------------------------------------------------

    def _frames_per_call(self) -> int:
        if self.teacher_frames:
            return self.teacher_frames
        with self._lock:
            sec = self._teacher_frame_seconds
        if sec is None:
            return 1
        return int(min(TEACHER_MAX_FRAMES, max(1, math.floor(TEACHER_CALL_SECONDS / max(sec, 1e-6)))))

    def _note_teacher_speed(self, frames: int, seconds: float) -> None:
        per = seconds / frames
        with self._lock:
            old = self._teacher_frame_seconds
            self._teacher_frame_seconds = per if old is None else 0.7 * old + 0.3 * per

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

        A few frames per ``teacher_block`` call: ``teacher_frames_per_call`` when set, else as many
        as take ~TEACHER_CALL_SECONDS (measured), so ``cancel`` is looked at that often. Noise:
        temperature * N(0, 1) from ``rng`` (None: the voice's ``teacher_temperature``). The excitation is computed once for the whole utterance
        and sliced per call, so the pieces equal one call over all frames.
        """
        assert self.teacher_cond is not None and self.teacher_block is not None
        if temperature is None:
            temperature = self.teacher_temperature
        cond = self.teacher_cond.run(
            mel[None].astype(np.float32),
            self.speaker_feed(self.teacher_cond, [speaker]),
            shrink_arena=mel.shape[1] > ARENA_MAX_FRAMES,
        )[0]  # (1, C, F)
        padded = np.concatenate([cond[:, :, :1], cond, cond[:, :, -1:]], axis=2)  # (1, C, F + 2)
        n_frames = cond.shape[2]
        exc = self.excitation(f0, n_frames)[None]  # (1, 3, F*hop)
        state = [np.zeros((1, c, k), np.float32) for c, k in self._state_shapes]
        x = np.zeros((1, 1), np.float32)
        f = 0  # first frame of the next call
        while f < n_frames:
            if cancel is not None and cancel.is_set():
                return
            n = min(self._frames_per_call(), n_frames - f)
            noise = rng.standard_normal((1, n * self.hop), dtype=np.float32)
            if temperature != 1.0:
                noise *= temperature
            t0 = time.perf_counter()
            window = exc[:, :, f * self.hop : (f + n) * self.hop]  # (1, 3, n*hop)
            out = self.teacher_block.run(padded[:, :, f : f + n + 2], window, noise, x, *state)
            self._note_teacher_speed(n, time.perf_counter() - t0)
            x, state = out[1], out[2:]
            f += n
            yield out[0][0], f >= n_frames

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


# ------------------------------------------------------------------------------------- the engine


class OnnxEngine:
    """``service.types.SpeechEngine`` over loaded :class:`Voice` s."""

    def __init__(self, voices: Sequence[Voice], max_batch: int = 8):
        if not voices:
            raise EngineLoadError("no voice loaded")
        self._voices = list(voices)
        self._by_name = {v.name: v for v in self._voices}
        self.max_batch = max_batch

    @property
    def voices(self) -> Sequence[VoiceInfo]:
        return [v.info for v in self._voices]

    @property
    def providers(self) -> Mapping[ModelKind, str]:
        out: dict[ModelKind, str] = {}
        for v in self._voices:
            if v.student is not None:
                out.setdefault("student", v.student.provider)
            if v.teacher_block is not None:
                out.setdefault("teacher", v.teacher_block.provider)
        return out

    def voice(self, name: str) -> Voice:
        try:
            return self._by_name[name]
        except KeyError:
            raise InputError(f"unknown voice {name!r} (loaded: {', '.join(self._by_name)})") from None

    def warmup(self) -> None:
        t0 = time.perf_counter()
        for v in self._voices:
            v.warmup(self.max_batch)
        log.info("warm-up done in %.2f s", time.perf_counter() - t0)

    # -- requests ---------------------------------------------------------------------------------

    def _check(self, request: SynthesisRequest) -> tuple[Voice, int | np.ndarray, list[Sentence]]:
        voice = self.voice(request.voice)
        if request.model not in voice.models:
            raise InputError(f"voice {voice.name!r} does not ship the {request.model} model")
        speaker: int | np.ndarray = (
            voice.speaker_id(request.speaker) if request.blend is None else voice.blend_weights(request.blend)
        )
        speed = request.speed
        if not (isinstance(speed, int | float) and math.isfinite(speed) and MIN_SPEED <= speed <= MAX_SPEED):
            raise InputError(f"speed must be between {MIN_SPEED} and {MAX_SPEED}, got {speed!r}")
        pitch = request.pitch
        if not (
            isinstance(pitch, int | float)
            and not isinstance(pitch, bool)
            and math.isfinite(pitch)
            and MIN_PITCH <= pitch <= MAX_PITCH
        ):
            raise InputError(
                f"pitch must be between {MIN_PITCH:g} and {MAX_PITCH:g} semitones, got {pitch!r}"
            )
        if not request.text or not request.text.strip():
            raise InputError("the input text is empty")
        options = request.normalization
        if not needs_markup(request.text, voice.lexicon, options):
            return voice, speaker, prepare_text(request.text, voice.symbols)
        sentences = prepare_markup(request.text, voice.symbols, voice.lexicon, options)
        for s in sentences:  # markup prosody on top of the request's
            if not MIN_SPEED <= speed * s.rate <= MAX_SPEED:
                raise InputError(
                    f"the prosody rate {s.rate:g} at character {s.span[0]} with speed {speed:g} gives "
                    f"{speed * s.rate:g}, outside {MIN_SPEED}..{MAX_SPEED}"
                )
            if not MIN_PITCH <= pitch + s.pitch <= MAX_PITCH:
                raise InputError(
                    f"the prosody pitch {s.pitch:+g} st at character {s.span[0]} with pitch {pitch:g} gives "
                    f"{pitch + s.pitch:+g}, outside {MIN_PITCH:g}..{MAX_PITCH:g} semitones"
                )
        return voice, speaker, sentences

    def synthesize(self, request: SynthesisRequest, cancel: CancelFlag | None = None) -> Iterator[AudioChunk]:
        voice, speaker, sentences = self._check(request)
        rng = np.random.default_rng(request.seed)
        last = len(sentences) - 1
        sr = voice.sample_rate
        if request.model == "student":
            for i, s in enumerate(sentences):
                if cancel is not None and cancel.is_set():
                    return
                mel, f0, dur = voice.features_timed(
                    [s.ids], [speaker], [request.speed * s.rate], [request.pitch + s.pitch]
                )[0]
                z = rng.standard_normal(mel.shape[1] * voice.hop, dtype=np.float32)
                audio = _with_pauses(voice.vocode([mel], [speaker], [z], [f0])[0], s, sr)
                words, phonemes = voice.timings(request.text, s, dur, mel) if request.timestamps else ([], [])
                if s.pause_before:  # the markup's silence leads the chunk
                    words, phonemes = (
                        timing.shift(words, s.pause_before),
                        timing.shift(phonemes, s.pause_before),
                    )
                yield AudioChunk(audio, sr, i, i == last, s.text, s.span, tuple(words), tuple(phonemes))
            return
        index = 0
        for i, s in enumerate(sentences):
            if cancel is not None and cancel.is_set():
                return
            if s.pause_before:
                yield AudioChunk(_silence(s.pause_before, sr), sr, index, False, s.text, s.span)
                index += 1
            mel, f0, dur = voice.features_timed(
                [s.ids], [speaker], [request.speed * s.rate], [request.pitch + s.pitch]
            )[0]
            words, phonemes = voice.timings(request.text, s, dur, mel) if request.timestamps else ([], [])
            done = 0.0  # seconds of this sentence already yielded
            for piece, final in voice.teacher(mel, speaker, rng, cancel, f0=f0):
                end = done + len(piece) / sr
                # the words and phonemes that end in this piece (all that are left on the last one)
                mine = [t for t in words if final or t.end <= end + 1e-9]
                words = words[len(mine) :]
                ph = [t for t in phonemes if final or t.end <= end + 1e-9]
                phonemes = phonemes[len(ph) :]
                yield AudioChunk(
                    piece,
                    sr,
                    index,
                    final and i == last and not s.pause_after,
                    s.text,
                    s.span,
                    tuple(timing.shift(mine, -done)),
                    tuple(timing.shift(ph, -done)),
                )
                index += 1
                done = end
            if s.pause_after and not (cancel is not None and cancel.is_set()):
                yield AudioChunk(_silence(s.pause_after, sr), sr, index, i == last, s.text, s.span)
                index += 1

    def synthesize_batch(
        self,
        requests: Sequence[SynthesisRequest],
        cancels: Sequence[CancelFlag | None] | None = None,
    ) -> Iterator[tuple[int, AudioChunk | InputError]]:
        cancels = list(cancels) if cancels is not None else [None] * len(requests)
        live: dict[int, tuple[Voice, int | np.ndarray, list[Sentence], np.random.Generator]] = {}
        for i, r in enumerate(requests):
            try:
                if r.model != "student":
                    raise InputError("synthesize_batch serves the student only")
                voice, speaker, sentences = self._check(r)
            except InputError as exc:
                yield i, exc
                continue
            live[i] = (voice, speaker, sentences, np.random.default_rng(r.seed))

        def stopped(i: int) -> bool:
            c = cancels[i]
            return c is not None and c.is_set()

        rounds = max((len(v[2]) for v in live.values()), default=0)
        for k in range(rounds):  # round k: the k-th sentence of every request still speaking
            todo = [i for i, v in live.items() if k < len(v[2]) and not stopped(i)]
            by_voice: dict[str, list[int]] = {}
            for i in todo:
                by_voice.setdefault(live[i][0].name, []).append(i)
            for rows in by_voice.values():
                voice = live[rows[0]][0]
                feats = voice.features_timed(
                    [live[i][2][k].ids for i in rows],
                    [live[i][1] for i in rows],
                    [requests[i].speed * live[i][2][k].rate for i in rows],
                    [requests[i].pitch + live[i][2][k].pitch for i in rows],
                )
                mels = [m for m, _, _ in feats]
                for group in voice.plan_student_batches([m.shape[1] for m in mels]):
                    if all(stopped(rows[j]) for j in group):
                        continue
                    noise = [
                        live[rows[j]][3].standard_normal(mels[j].shape[1] * voice.hop, dtype=np.float32)
                        for j in group
                    ]
                    audio = voice.vocode(
                        [mels[j] for j in group],
                        [live[rows[j]][1] for j in group],
                        noise,
                        [feats[j][1] for j in group],
                    )
                    for j, a in zip(group, audio, strict=True):
                        i = rows[j]
                        if stopped(i):
                            continue
                        s = live[i][2][k]
                        words, phonemes = (
                            voice.timings(requests[i].text, s, feats[j][2], feats[j][0])
                            if requests[i].timestamps
                            else ([], [])
                        )
                        if s.pause_before:  # the markup's silence leads the chunk
                            words = timing.shift(words, s.pause_before)
                            phonemes = timing.shift(phonemes, s.pause_before)
                        a = _with_pauses(a, s, voice.sample_rate)
                        yield (
                            i,
                            AudioChunk(
                                a,
                                voice.sample_rate,
                                k,
                                k == len(live[i][2]) - 1,
                                s.text,
                                s.span,
                                tuple(words),
                                tuple(phonemes),
                            ),
                        )


# ------------------------------------------------------------------------------------- loading


def resolve_providers(device: str, require_cuda: bool, gpu_mem_limit_mb: int | None = None) -> list:
    """ONNX Runtime providers for ``device`` ("auto" | "cpu" | "cuda"); ``gpu_mem_limit_mb``: the
    CUDA arena limit per session (None or 0: no limit)."""
    if device not in ("auto", "cpu", "cuda"):
        raise EngineLoadError(f"device must be auto, cpu or cuda, got {device!r}")
    ort = _ort()
    available = ort.get_available_providers()
    if device == "cpu":
        return [CPU]
    if CUDA in available:
        _preload_cuda_libraries(ort)
        return [cuda_provider(gpu_mem_limit_mb), CPU]
    if device == "cuda":
        msg = (
            f"CUDA asked for but onnxruntime {ort.__version__} has no CUDA provider "
            f"(available: {', '.join(available)}); install onnxruntime-gpu"
        )
        if require_cuda:
            raise EngineLoadError(msg)
        log.warning("%s; running on the CPU", msg)
    return [CPU]


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


def _preload_cuda_libraries(ort) -> None:
    """Load the CUDA/cuDNN libraries onnxruntime-gpu's CUDA provider links against before the
    first session: the ``gpu`` extra installs them as NVIDIA pip packages (onnxruntime-gpu[cuda,
    cudnn]), which the dynamic loader does not search by itself. onnxruntime >= 1.21 has
    ``preload_dlls`` for that; it falls back to the system's libraries (a CUDA base image, or torch's
    when torch was imported first). A failure here is not fatal: the session then logs why the CUDA
    provider did not load and runs on the CPU (or, with require_cuda, the load stops with a message)."""
    preload = getattr(ort, "preload_dlls", None)
    if preload is None:
        return
    try:
        preload()
    except Exception as exc:  # a missing library is reported by the session that needs it
        log.warning("onnxruntime.preload_dlls failed (%s); relying on the system's CUDA libraries", exc)


def _load_voice(
    path: Path, providers: list, intra_op_threads: int | None, require_cuda: bool, **knobs: Any
) -> Voice:
    """A voice on ``providers``; on CUDA it must also run one short utterance, else (unless CUDA is
    required) it is loaded again on the CPU: a GPU whose kernels fail at run time must not turn every
    request into a server error. ``knobs``: more keyword arguments of :meth:`Voice.load`."""
    voice = Voice.load(path, providers, intra_op_threads=intra_op_threads, **knobs)
    on_cuda = any(g.provider == CUDA for g in voice.graphs.values())
    if not on_cuda:
        return voice
    try:
        voice.smoke_test()
    except Exception as exc:  # onnxruntime raises its own types; any failure means "not usable here"
        first = _first_line(exc)
        if require_cuda:
            raise EngineLoadError(f"{path}: a test run on CUDA failed: {first}") from None
        log.warning("voice %s: a test run on CUDA failed (%s); running it on the CPU", voice.name, first)
        voice = Voice.load(path, [CPU], intra_op_threads=intra_op_threads, **knobs)
    return voice


def bundle_dirs(voices_dir: Path) -> list[Path]:
    return sorted(p.parent for p in Path(voices_dir).glob(f"*/{bundle_io.MANIFEST}"))


def load_engine(
    voices_dir: Path,
    *,
    device: str = "auto",
    require_cuda: bool = False,
    intra_op_threads: int | None = None,
    max_batch: int = 8,
    student_threads: int | None = None,
    ort_spin: bool = False,
    gpu_mem_limit_mb: int | None = None,
    teacher_frames_per_call: int | None = None,
    teacher_temperature: float | None = None,
    lexicon: Path | None = None,
    voice_lexicons: Mapping[str, Path] | None = None,
) -> OnnxEngine:
    """Load every bundle under ``voices_dir``; EngineLoadError (one line) when it cannot.

    The knobs (``intra_op_threads`` .. ``teacher_frames_per_call``, see the module's docstring) are
    the ``Settings`` fields of the same names (``Settings.engine_options()``)."""
    voices_dir = Path(voices_dir)
    dirs = bundle_dirs(voices_dir)
    if not dirs:
        raise EngineLoadError(f"no voice bundle in {voices_dir} (expected <name>/{bundle_io.MANIFEST})")
    providers = resolve_providers(device, require_cuda, gpu_mem_limit_mb)
    if intra_op_threads is None:
        intra_op_threads = DEFAULT_INTRA_OP_THREADS
    knobs = {
        "student_threads": student_threads,
        "ort_spin": ort_spin,
        "teacher_frames_per_call": teacher_frames_per_call,
        "teacher_temperature": teacher_temperature,
        "lexicon": lexicon,
        "voice_lexicons": voice_lexicons,
    }
    voices = [_load_voice(d, providers, intra_op_threads, require_cuda, **knobs) for d in dirs]
    unknown = sorted(set(voice_lexicons or {}) - {v.name for v in voices})
    if unknown:
        raise EngineLoadError(
            f"voice_lexicons names {', '.join(unknown)}, not a loaded voice ({', '.join(v.name for v in voices)})"
        )
    if _provider_name(providers[0]) == CUDA and require_cuda:
        for v in voices:
            for role in ("acoustic", "student"):
                g = v.graphs.get(role)
                if g is not None and g.provider != CUDA:
                    raise EngineLoadError(
                        f"{v.path}: the {role} graph fell back to {g.provider} (the CUDA provider failed to load; "
                        "check the CUDA/cuDNN libraries onnxruntime-gpu needs)"
                    )
    engine = OnnxEngine(voices, max_batch=max_batch)
    log.info(
        "engine: %d voice(s) %s; providers %s", len(voices), [v.name for v in voices], dict(engine.providers)
    )
    return engine
