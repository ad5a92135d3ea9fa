"""The ONNX Runtime inference engine (torch-free): ``service.types.SpeechEngine`` over loaded voices.

:class:`OnnxEngine` checks a request (voice, model, speaker or blend, the request limits of
``core.limits``, the text through ``model.text.frontend``: one definition of text -> sentences ->
ids), then has its :class:`~service.voice.Voice` speak it sentence by sentence: the student one
chunk per sentence (:meth:`OnnxEngine.synthesize_batch`: the k-th sentences of several requests in
batched runs, :func:`plan_student_batches`), the teacher small chunks as it generates. Markup
pauses become silence around a sentence; word and phoneme timings ride on the chunks.

Threading. ``InferenceSession.run`` is safe to call from several threads at once; every request
has its own numpy RNG; the teacher's calibrated frames per call is guarded by a lock
(``service.teacher``). ``synthesize``/``synthesize_batch`` are lazy generators.

Loading: ``service.loading.load_engine`` (what ``service.state.default_engine_loader`` calls).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from core.limits import LimitError, check_pitch, check_prosody, check_speed
from service import timing
from service.sessions import CPU, CUDA
from service.types import (
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
from service.voice import Voice

if TYPE_CHECKING:
    from model.text.frontend import Sentence

log = logging.getLogger(__name__)

STUDENT_PAD_WASTE = {CPU: 0.15, CUDA: 1.0}  # padding allowed in a batched student run, by provider


def plan_student_batches(frames: Sequence[int], provider: str) -> list[list[int]]:
    """Group rows (by index) into student runs on ``provider``: sorted by length, a row joins the
    current run while the padding stays under the provider's waste bound (CPU: ~none pays; CUDA:
    batching pays as long as the GPU is not full)."""
    waste = STUDENT_PAD_WASTE.get(provider, 0.15)
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


def timings(
    voice: Voice, text: str, sentence: Sentence, durations: np.ndarray, mel: np.ndarray | None = None
) -> tuple[list[WordTiming], list[PhonemeTiming]]:
    """A sentence's word and phoneme timings (seconds from its first sample) from its durations
    (and its mel (n_mels, F): where the sound starts inside the first phoneme, see
    ``service.timing.speech_bounds``); none when its phoneme string is unknown (``Sentence``)."""
    if not sentence.phonemes:
        return [], []
    from model.text.wordmap import word_spans

    words = word_spans(text, sentence.span, sentence.normalized, sentence.phonemes)
    bounds = timing.speech_bounds(mel, durations) if mel is not None else None
    return timing.sentence_timings(words, sentence.phonemes, durations, voice.hop / voice.sample_rate, bounds)


def _silence(seconds: float, rate: int) -> np.ndarray:
    return np.zeros(round(seconds * rate), np.float32)  # (T,)


def _with_pauses(audio: np.ndarray, s: Sentence, rate: int) -> np.ndarray:
    """A sentence's audio with its markup pauses around it."""
    if not (s.pause_before or s.pause_after):
        return audio
    return np.concatenate([_silence(s.pause_before, rate), audio, _silence(s.pause_after, rate)])


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
        from model.text.frontend import TextError, prepare

        try:
            speed, pitch = check_speed(request.speed), check_pitch(request.pitch)
            if not request.text or not request.text.strip():
                raise InputError("the input text is empty")
            sentences = prepare(request.text, voice.symbols, voice.lexicon, request.normalization)
            for s in sentences:  # markup prosody on top of the request's
                check_prosody(speed, pitch, s.rate, s.pitch, f"character {s.span[0]}")
        except (LimitError, TextError) as exc:
            raise InputError(str(exc)) from None
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
                words, phonemes = (
                    timings(voice, request.text, s, dur, mel) if request.timestamps else ([], [])
                )
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
            words, phonemes = timings(voice, request.text, s, dur, mel) if request.timestamps else ([], [])
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
                for group in plan_student_batches(
                    [m.shape[1] for m in mels], voice.student.provider if voice.student else CPU
                ):
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
                            timings(voice, requests[i].text, s, feats[j][2], feats[j][0])
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
