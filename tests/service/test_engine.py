"""The ONNX Runtime engine on the committed tiny bundle (random weights): the SpeechEngine contract."""

from __future__ import annotations

import itertools
import re
import threading
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from core.excitation import excitation
from model.text.frontend import prepare_text
from service import loading, sessions
from service import teacher as teacher_mod
from service import voice as voice_mod
from service.engine import OnnxEngine, plan_student_batches
from service.loading import load_engine
from service.sessions import CPU
from service.settings import Settings
from service.state import default_engine_loader
from service.types import EngineLoadError, InputError, SpeechEngine, SynthesisRequest, VoiceInfo
from service.voice import Voice

VOICES = Path(__file__).resolve().parents[1] / "fixtures" / "voices"
HOP = 200
TEXT = "Hello world. This is a test of the engine!  Dr. Smith paid $5."
TEACHER_FRAMES = 4  # frames per teacher_block call, fixed: chunking must not follow the machine's speed


@pytest.fixture(scope="module")
def engine() -> OnnxEngine:
    e = load_engine(VOICES, device="cpu", require_cuda=False, teacher_frames_per_call=TEACHER_FRAMES)
    e.warmup()
    return e


def req(text=TEXT, speaker="alpha", **kw) -> SynthesisRequest:
    return SynthesisRequest(text, "tiny", speaker, **kw)


def test_engine_satisfies_the_protocol(engine):
    assert isinstance(engine, SpeechEngine)
    assert list(engine.voices) == [
        VoiceInfo("tiny", 16000, ("alpha", "beta"), ("student", "teacher"), blendable=True)
    ]
    assert dict(engine.providers) == {"student": CPU, "teacher": CPU}


def test_student_yields_one_chunk_per_sentence_with_spans(engine):
    chunks = list(engine.synthesize(req(seed=1)))
    assert [c.text for c in chunks] == ["Hello world.", "This is a test of the engine!", "Dr. Smith paid $5."]
    for c in chunks:
        assert TEXT[c.span[0] : c.span[1]] == c.text
        assert c.audio.dtype == np.float32 and c.audio.ndim == 1
        assert c.audio.size > 0 and c.audio.size % HOP == 0
        assert np.all(np.abs(c.audio) <= 1.0) and np.isfinite(c.audio).all()
        assert c.sample_rate == 16000
    assert [c.index for c in chunks] == [0, 1, 2]
    assert [c.is_last for c in chunks] == [False, False, True]


def test_seed_makes_audio_reproducible(engine):
    a = [c.audio for c in engine.synthesize(req(seed=7))]
    b = [c.audio for c in engine.synthesize(req(seed=7))]
    c = [c.audio for c in engine.synthesize(req(seed=8))]
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[0], c[0])


def test_speed_and_speaker_change_the_audio(engine):
    normal = sum(c.audio.size for c in engine.synthesize(req("A short sentence here.", seed=1)))
    fast = sum(c.audio.size for c in engine.synthesize(req("A short sentence here.", seed=1, speed=2.0)))
    slow = sum(c.audio.size for c in engine.synthesize(req("A short sentence here.", seed=1, speed=0.5)))
    assert slow > normal > fast
    alpha = next(engine.synthesize(req("Same words.", "alpha", seed=1))).audio
    beta = next(engine.synthesize(req("Same words.", "beta", seed=1))).audio
    assert alpha.shape != beta.shape or not np.array_equal(alpha, beta)


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (req(speaker="gamma"), "no speaker 'gamma'"),
        (req("   "), "empty"),
        (req("... !!! ---"), "nothing to speak"),
        (SynthesisRequest("Hi.", "nope", "alpha"), "unknown voice 'nope'"),
        (req(speed=9.0), "speed must be between"),
        (req(pitch=12.5), "pitch must be between -12 and 12"),
        (req(pitch=-13), "pitch must be between -12 and 12"),
        (req(pitch=float("nan")), "pitch must be between"),
        (req(pitch=float("inf")), "pitch must be between"),
        (req(pitch=True), "pitch must be between"),
        (req(pitch="2"), "pitch must be between"),
    ],
)
def test_bad_requests_raise_input_error(engine, request_, message):
    with pytest.raises(InputError, match=message):
        list(engine.synthesize(request_))
    (item,) = [x for _, x in engine.synthesize_batch([request_])]  # the batch path checks the same
    assert isinstance(item, InputError) and re.search(message, str(item))


@pytest.mark.parametrize("pitch", [-12, 12.0, 0.5])
def test_pitch_in_range_is_accepted_and_applied(engine, monkeypatch, pitch):
    """Every pitch up to the limits is taken and applied: the vocoder gets the voice's own F0 scaled
    by 2^(p/12) on the same voiced frames (not just some audio back)."""
    voice = engine.voice("tiny")
    seen = []
    original = voice.vocode

    def spy(mels, speakers, noise, f0s=None):
        seen.append(f0s[0])
        return original(mels, speakers, noise, f0s)

    monkeypatch.setattr(voice, "vocode", spy)
    plain = np.concatenate([c.audio for c in engine.synthesize(req("Hi there.", seed=1))])
    shifted = np.concatenate([c.audio for c in engine.synthesize(req("Hi there.", seed=1, pitch=pitch))])
    assert plain.size > 0 and shifted.size > 0
    own, moved = seen
    voiced = own > 0
    assert voiced.any() and np.array_equal(voiced, moved > 0)
    np.testing.assert_allclose(moved[voiced] / own[voiced], 2 ** (pitch / 12), rtol=1e-4)


def test_teacher_streams_small_chunks(engine):
    voice = engine.voice("tiny")
    frames = [
        voice.mels([s.ids], [0], [1.0])[0].shape[1]
        for s in prepare_text("Hello world. Bye now.", voice.symbols)
    ]
    chunks = list(engine.synthesize(req("Hello world. Bye now.", model="teacher", seed=3)))
    # TEACHER_FRAMES frames per chunk, a sentence's last chunk the rest: the count follows from the mels
    assert len(chunks) == sum(-(-f // TEACHER_FRAMES) for f in frames) > 2
    sizes = [c.audio.size for c in chunks]
    expected = [TEACHER_FRAMES * HOP] * (-(-frames[0] // TEACHER_FRAMES) - 1) + [
        (frames[0] - 1) % TEACHER_FRAMES * HOP + HOP
    ]
    assert sizes[: len(expected)] == expected
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert [c.is_last for c in chunks] == [False] * (len(chunks) - 1) + [True]
    assert {c.text for c in chunks} == {"Hello world.", "Bye now."}
    total = sum(c.audio.size for c in chunks)
    assert total % HOP == 0
    # same seed, same audio, whatever the chunking
    again = np.concatenate(
        [c.audio for c in engine.synthesize(req("Hello world. Bye now.", model="teacher", seed=3))]
    )
    np.testing.assert_array_equal(np.concatenate([c.audio for c in chunks]), again)


def test_teacher_frames_per_call_follow_the_measured_speed_unless_fixed():
    """Unset, the frames per call aim at TEACHER_CALL_SECONDS of work (a smoothed measurement);
    ``teacher_frames_per_call`` fixes them whatever the speed."""
    voice = Voice.load(VOICES / "tiny")
    assert (
        voice.teacher_loop.frames is None and voice.teacher_loop.frames_per_call() == 1
    )  # nothing measured yet
    voice.teacher_loop.note_speed(10, 10 * teacher_mod.TEACHER_CALL_SECONDS / 8)  # 8 frames take the budget
    assert voice.teacher_loop.frames_per_call() == 8
    voice.teacher_loop.note_speed(1, 1e-9)  # much faster: smoothed (0.7 old + 0.3 new)
    assert voice.teacher_loop.frames_per_call() == int(1 / 0.7 * 8)
    for _ in range(40):
        voice.teacher_loop.note_speed(100, 1e-9)
    assert voice.teacher_loop.frames_per_call() == teacher_mod.TEACHER_MAX_FRAMES
    voice.teacher_loop.note_speed(1, 100.0)
    assert voice.teacher_loop.frames_per_call() == 1
    fixed = Voice.load(VOICES / "tiny", teacher_frames_per_call=5)
    assert fixed.teacher_loop.frames_per_call() == 5
    fixed.teacher_loop.note_speed(1, 100.0)
    assert fixed.teacher_loop.frames_per_call() == 5


def test_teacher_pieces_of_varying_size_match_one_call_with_the_excitation(engine, monkeypatch):
    """Chunked generation (state carried across calls of 1, 3, 2, ... frames, each given its slice
    of the utterance's excitation) == one block call over the whole mel and excitation; and the
    teacher hears the excitation (an unvoiced one gives other audio)."""
    voice = engine.voice("tiny")
    s = prepare_text("Testing one two.", voice.symbols)[0]
    mel, f0 = voice.features([s.ids], [1], [1.0])[0]
    assert (f0 > 0).any() and not (f0 > 0).all()
    sizes = itertools.cycle([1, 3, 2])
    monkeypatch.setattr(voice.teacher_loop, "frames_per_call", lambda: next(sizes))
    pieces = [p for p, _ in voice.teacher(mel, 1, np.random.default_rng(5), f0=f0)]
    assert {len(p) for p in pieces[:-1]} == {HOP, 2 * HOP, 3 * HOP}
    cond = voice.teacher_cond.run(mel[None], voice.speaker_feed(voice.teacher_cond, [1]))[0]
    padded = np.concatenate([cond[:, :, :1], cond, cond[:, :, -1:]], axis=2)
    exc = excitation(f0, HOP, voice.sample_rate)[None]  # (1, 3, F*hop): the function training uses
    noise = np.random.default_rng(5).standard_normal((1, mel.shape[1] * HOP), dtype=np.float32)
    state = [np.zeros((1, c, k), np.float32) for c, k in voice.teacher_loop.state_shapes]
    whole = voice.teacher_block.run(padded, exc, noise, np.zeros((1, 1), np.float32), *state)[0][0]
    np.testing.assert_allclose(np.concatenate(pieces), whole, atol=1e-6)
    unvoiced = np.concatenate([p for p, _ in voice.teacher(mel, 1, np.random.default_rng(5))])
    assert np.abs(unvoiced - whole).max() > 1e-3


def test_teacher_temperature_comes_from_the_bundle_unless_overridden(tmp_path):
    """voice.json's inference.teacher_temperature is the teacher's default noise scale (a voice.json
    without it: 1); the load-time override (Settings.teacher_temperature) wins; an explicit argument
    wins over both. Same seed, so equal temperatures give equal audio and different ones do not."""
    import json
    import shutil

    folder = tmp_path / "tiny"
    shutil.copytree(VOICES / "tiny", folder)
    manifest = json.loads((folder / "voice.json").read_text())
    manifest["inference"] = {"teacher_temperature": 0.5}
    (folder / "voice.json").write_text(json.dumps(manifest))
    plain = Voice.load(VOICES / "tiny", teacher_frames_per_call=TEACHER_FRAMES)
    cool = Voice.load(folder, teacher_frames_per_call=TEACHER_FRAMES)
    warm = Voice.load(folder, teacher_frames_per_call=TEACHER_FRAMES, teacher_temperature=1.0)
    assert (plain.teacher_temperature, cool.teacher_temperature, warm.teacher_temperature) == (1.0, 0.5, 1.0)
    s = prepare_text("Testing one two.", plain.symbols)[0]
    mel, f0 = plain.features([s.ids], [1], [1.0])[0]

    def run(voice, **kw):
        return np.concatenate([p for p, _ in voice.teacher(mel, 1, np.random.default_rng(3), f0=f0, **kw)])

    np.testing.assert_array_equal(run(cool), run(plain, temperature=0.5))
    np.testing.assert_array_equal(run(warm), run(plain))
    np.testing.assert_array_equal(run(cool, temperature=1.0), run(plain))
    assert np.abs(run(cool) - run(plain)).max() > 1e-4
    engine = load_engine(tmp_path, device="cpu", require_cuda=False, teacher_temperature=0.8)
    assert engine.voice("tiny").teacher_temperature == 0.8
    assert Settings(teacher_temperature=0.8).engine_options()["teacher_temperature"] == 0.8
    with pytest.raises(ValidationError):
        Settings(teacher_temperature=0)


def test_teacher_gets_the_acoustic_f0(engine, monkeypatch):
    """OnnxEngine.synthesize gives the teacher the acoustic model's (pitch-shifted) F0."""
    voice = engine.voice("tiny")
    seen = []
    original = voice.teacher

    def spy(mel, speaker, rng, cancel=None, temperature=None, f0=None):
        seen.append((mel.shape[1], f0))
        return original(mel, speaker, rng, cancel, temperature, f0)

    monkeypatch.setattr(voice, "teacher", spy)
    s = prepare_text("Hello there.", voice.symbols)[0]
    _, want = voice.features([s.ids], [0], [1.0], [3.0])[0]
    assert list(engine.synthesize(req("Hello there.", model="teacher", seed=1, pitch=3.0)))
    ((frames, f0),) = seen
    assert f0 is not None and f0.shape == (frames,) and (f0 > 0).any()
    np.testing.assert_array_equal(f0, want)


def test_teacher_stops_when_cancelled(engine):
    cancel = threading.Event()
    got = []
    for chunk in engine.synthesize(
        req("A long sentence for the teacher to speak slowly.", model="teacher"), cancel
    ):
        got.append(chunk)
        cancel.set()
    assert len(got) == 1 and not got[0].is_last


def test_student_stops_when_cancelled(engine):
    cancel = threading.Event()
    got = []
    for chunk in engine.synthesize(req(seed=1), cancel):
        got.append(chunk)
        cancel.set()
    assert len(got) == 1


def test_batch_isolates_bad_requests_and_matches_single_runs(engine):
    requests = [
        req("Hello world. This is a test.", seed=1),
        req("...", seed=2),
        req("Other words, other speaker.", "beta", seed=3, speed=1.5),
    ]
    out: dict[int, list] = {}
    for i, item in engine.synthesize_batch(requests):
        out.setdefault(i, []).append(item)
    assert len(out[1]) == 1 and isinstance(out[1][0], InputError)
    for i in (0, 2):
        chunks = out[i]
        assert [c.index for c in chunks] == list(range(len(chunks)))
        assert chunks[-1].is_last
        single = list(engine.synthesize(requests[i]))
        assert [c.text for c in chunks] == [c.text for c in single]
        for a, b in zip(chunks, single, strict=True):
            assert a.audio.shape == b.audio.shape
            # batched rows may differ from a lone run only in their last 2 frames (conditioning look-ahead)
            np.testing.assert_allclose(a.audio[: -2 * HOP], b.audio[: -2 * HOP], atol=1e-5)


def test_batch_runs_the_student_once_for_similar_lengths(engine, monkeypatch):
    voice = engine.voice("tiny")
    calls = []
    original = voice.vocode

    def counting(mels, speakers, noise, f0s=None):
        calls.append(len(mels))
        return original(mels, speakers, noise, f0s)

    monkeypatch.setattr(voice, "vocode", counting)
    requests = [req("The same sentence.", seed=s) for s in range(4)]
    items = list(engine.synthesize_batch(requests))
    assert len(items) == 4 and calls == [4]


def test_batch_cancel_stops_one_request(engine):
    cancels = [threading.Event(), None]
    requests = [req("One. Two. Three.", seed=1), req("One. Two. Three.", seed=2)]
    seen: dict[int, int] = {0: 0, 1: 0}
    for i, _ in engine.synthesize_batch(requests, cancels):
        seen[i] += 1
        if i == 0:
            cancels[0].set()
    assert seen == {0: 1, 1: 3}


def test_padded_student_batch_differs_only_at_the_row_end(engine):
    voice = engine.voice("tiny")
    rng = np.random.default_rng(0)
    mels = [rng.normal(-5, 1, (20, n)).astype(np.float32) for n in (9, 4)]
    noise = [rng.standard_normal(m.shape[1] * HOP).astype(np.float32) for m in mels]
    together = voice.vocode(mels, [0, 0], noise)
    alone = [voice.vocode([m], [0], [z])[0] for m, z in zip(mels, noise, strict=True)]
    np.testing.assert_allclose(together[0], alone[0], atol=1e-6)  # the longest row is not padded
    np.testing.assert_allclose(together[1][: -2 * HOP], alone[1][: -2 * HOP], atol=1e-6)


def test_student_batch_planning_bounds_padding():
    assert plan_student_batches([100, 101, 99, 100], CPU) == [[2, 0, 3, 1]]
    assert plan_student_batches([10, 100, 11], CPU) == [[0, 2], [1]]


def test_concurrent_callers_get_their_own_audio(engine):
    texts = [f"Caller number {i} says hello." for i in range(4)]
    expected = [
        np.concatenate([c.audio for c in engine.synthesize(req(t, seed=i))]) for i, t in enumerate(texts)
    ]
    results: dict[int, np.ndarray] = {}

    def work(i: int) -> None:
        for _ in range(3):
            results[i] = np.concatenate([c.audio for c in engine.synthesize(req(texts[i], seed=i))])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for i in range(4):
        np.testing.assert_array_equal(results[i], expected[i])


def test_prepare_text_spans_survive_whitespace():
    from model.text import default_symbols

    text = "First   one.\n\nSecond\tone here."
    sentences = prepare_text(text, default_symbols())
    assert [text[a:b] for a, b in (s.span for s in sentences)] == ["First   one.", "Second\tone here."]


# -- loading ---------------------------------------------------------------------------------------------


def test_no_bundle_is_a_load_error(tmp_path):
    with pytest.raises(EngineLoadError, match="no voice bundle"):
        load_engine(tmp_path, device="cpu", require_cuda=False)


def test_cuda_required_but_missing_is_a_load_error(monkeypatch):
    import onnxruntime

    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: [CPU])
    with pytest.raises(EngineLoadError, match="no CUDA provider"):
        load_engine(VOICES, device="cuda", require_cuda=True)
    fallback = load_engine(VOICES, device="cuda", require_cuda=False)
    assert fallback.providers["student"] == CPU


def test_cuda_libraries_preloaded_only_when_cuda_is_used(monkeypatch):
    """The gpu extra's NVIDIA pip libraries are loaded before CUDA sessions (onnxruntime.preload_dlls),
    never on the CPU path; a failing preload is a warning, not a load error."""
    import onnxruntime

    calls = []
    monkeypatch.setattr(onnxruntime, "preload_dlls", lambda: calls.append(1), raising=False)
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: [sessions.CUDA, CPU])
    assert sessions.resolve_providers("cpu", require_cuda=False) == [CPU]
    assert calls == []
    providers = sessions.resolve_providers("auto", require_cuda=False)
    assert [sessions.provider_name(p) for p in providers] == [sessions.CUDA, CPU]
    assert calls == [1]

    def broken():
        raise OSError("libcudart.so.13: cannot open shared object file")

    monkeypatch.setattr(onnxruntime, "preload_dlls", broken, raising=False)
    assert sessions.provider_name(sessions.resolve_providers("cuda", require_cuda=True)[0]) == sessions.CUDA


def test_smoke_test_runs_a_short_utterance():
    voice = Voice.load(VOICES / "tiny")
    calls = []
    real_features, real_vocode = voice.features, voice.vocode
    voice.features = lambda *a: calls.append("features") or real_features(*a)
    voice.vocode = lambda *a: calls.append("vocode") or real_vocode(*a)
    voice.smoke_test()
    assert calls == ["features", "vocode"]


def test_a_voice_failing_on_cuda_runs_on_the_cpu_unless_cuda_is_required(monkeypatch):
    """A GPU whose kernels fail at run time: the voice is loaded again on the CPU (or, with
    require_cuda, the load stops with one line) instead of every request failing."""
    real_load = Voice.load.__func__
    loads = []

    def load(cls, path, providers=(CPU,), **kw):
        names = [sessions.provider_name(p) for p in providers]
        loads.append(names)
        voice = real_load(cls, path, [CPU], **kw)
        if names[0] == sessions.CUDA:
            voice.student.provider = sessions.CUDA  # as if the session had got the GPU
        return voice

    def smoke(self):
        if self.student.provider == sessions.CUDA:
            raise RuntimeError("CUDA failure 209: no kernel image is available\nstack ...")

    monkeypatch.setattr(Voice, "load", classmethod(load))
    monkeypatch.setattr(Voice, "smoke_test", smoke)
    cuda = [sessions.cuda_provider(), CPU]
    voice = loading.load_voice(VOICES / "tiny", cuda, None, require_cuda=False)
    assert voice.student.provider == CPU
    assert loads == [[sessions.CUDA, CPU], [CPU]]
    with pytest.raises(
        EngineLoadError, match=r"a test run on CUDA failed: CUDA failure 209: no kernel image is available$"
    ):
        loading.load_voice(VOICES / "tiny", cuda, None, require_cuda=True)


def test_cuda_provider_options():
    name, opts = sessions.cuda_provider(512)
    assert name == "CUDAExecutionProvider"
    assert opts["cudnn_conv_algo_search"] == "HEURISTIC"
    assert opts["gpu_mem_limit"] == 512 * 1024 * 1024


def _settings(**values) -> Settings:
    return Settings(_env_file=None, voices_dir=VOICES, device="cpu", **values)


def test_intra_op_threads_from_the_settings(monkeypatch):
    def threads() -> int:
        e = default_engine_loader(_settings())
        return e.voice("tiny").student.session.get_session_options().intra_op_num_threads

    monkeypatch.delenv("PARAWAVE_INTRA_OP_THREADS", raising=False)
    assert threads() == sessions.DEFAULT_INTRA_OP_THREADS == 1
    monkeypatch.setenv("PARAWAVE_INTRA_OP_THREADS", "2")
    assert threads() == 2
    monkeypatch.setenv("PARAWAVE_INTRA_OP_THREADS", "0")  # onnxruntime's choice
    assert threads() == 0
    monkeypatch.setenv("PARAWAVE_INTRA_OP_THREADS", "many")
    with pytest.raises(ValidationError, match="intra_op_threads"):
        _settings()
    monkeypatch.setenv("PARAWAVE_INTRA_OP_THREADS", "-1")
    with pytest.raises(ValidationError, match="intra_op_threads"):
        _settings()


def test_engine_knobs_from_a_dotenv_file(tmp_path, monkeypatch):
    """The engine knobs are settings like any other: a .env file sets them too."""
    for name in (
        "INTRA_OP_THREADS",
        "STUDENT_THREADS",
        "ORT_SPIN",
        "GPU_MEM_LIMIT_MB",
        "TEACHER_FRAMES_PER_CALL",
        "TEACHER_TEMPERATURE",
    ):
        monkeypatch.delenv(f"PARAWAVE_{name}", raising=False)
    env = tmp_path / ".env"
    env.write_text(
        "PARAWAVE_INTRA_OP_THREADS=2\nPARAWAVE_STUDENT_THREADS=3\nPARAWAVE_ORT_SPIN=1\n"
        "PARAWAVE_GPU_MEM_LIMIT_MB=512\nPARAWAVE_TEACHER_FRAMES_PER_CALL=6\nPARAWAVE_TEACHER_TEMPERATURE=0.5\n"
    )
    settings = Settings(_env_file=env, voices_dir=VOICES, device="cpu")
    assert settings.engine_options() == {
        "intra_op_threads": 2,
        "student_threads": 3,
        "ort_spin": True,
        "gpu_mem_limit_mb": 512,
        "teacher_frames_per_call": 6,
        "teacher_temperature": 0.5,
        "lexicon": None,
        "voice_lexicons": {},
    }
    voice = default_engine_loader(settings).voice("tiny")
    assert (
        voice.piece_threads == 3
        and voice.teacher_loop.frames_per_call() == 6
        and voice.teacher_temperature == 0.5
    )
    for g in voice.graphs.values():
        options = g.session.get_session_options()
        assert options.get_session_config_entry("session.intra_op.allow_spinning") == "1"
    assert voice.student.session.get_session_options().intra_op_num_threads == 2
    assert Settings(_env_file=None).engine_options()["ort_spin"] is False
    off = default_engine_loader(_settings()).voice("tiny").student.session.get_session_options()
    assert off.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_gpu_memory_limit_reaches_the_cuda_provider(monkeypatch):
    import onnxruntime

    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: [sessions.CUDA, CPU])
    monkeypatch.setattr(onnxruntime, "preload_dlls", lambda: None, raising=False)
    (name, opts), _ = sessions.resolve_providers(
        "cuda", True, _settings(gpu_mem_limit_mb=64).gpu_mem_limit_mb
    )
    assert name == sessions.CUDA and opts["gpu_mem_limit"] == 64 * 1024 * 1024
    (_, opts), _ = sessions.resolve_providers("cuda", True)
    assert "gpu_mem_limit" not in opts


def test_service_and_engine_work_without_torch(python_without):
    """torch made unimportable: the runtime imports, loads the bundle and speaks."""
    code = (
        "import service, service.engine, service.loading, service.bundle, service.graphs, service.app\n"
        "from service.types import SynthesisRequest\n"
        f"e = service.loading.load_engine({str(VOICES)!r}, device='cpu', require_cuda=False)\n"
        "n = sum(c.audio.size for c in e.synthesize(SynthesisRequest('Hello.', 'tiny', 'alpha', seed=1)))\n"
        "assert n > 0\n"
        "assert not any(m == 'torch' or m.startswith('torch.') for m in sys.modules)\n"
        "print('ok')\n"
    )
    out = python_without(code, blocked=("torch", "model.acoustic"))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_long_utterances_are_vocoded_in_exact_pieces_on_cpu(engine, monkeypatch):
    voice = engine.voice("tiny")
    assert voice.chunk_frames == voice_mod.STUDENT_CHUNK_FRAMES
    assert voice.manifest.context["student"] == (3, 2)
    rng = np.random.default_rng(1)
    n = voice.chunk_frames * 2 + 17
    mel = rng.normal(-5.0, 1.0, (20, n)).astype(np.float32)
    z = rng.standard_normal(n * HOP).astype(np.float32)
    calls = []
    run = voice.student.run
    monkeypatch.setattr(voice.student, "run", lambda *a: calls.append(a[0].shape) or run(*a))
    monkeypatch.setattr(voice, "piece_threads", 1)
    pieces = voice.vocode([mel], [0], [z])[0]
    assert len(calls) == 3
    whole = run(
        z[None], mel[None], voice.speaker_feed(voice.student, [0]), np.zeros((1, 3, n * HOP), np.float32)
    )[0][0]
    np.testing.assert_allclose(pieces, whole, atol=1e-5)


def test_pieces_of_one_utterance_run_in_parallel_and_equal_one_run(engine, monkeypatch):
    """With 2 threads a 100-frame utterance (one piece alone) is cut in 2, each on a pool thread;
    the audio is the same as one whole run."""
    voice = engine.voice("tiny")
    monkeypatch.setattr(voice, "piece_threads", 2)
    rng = np.random.default_rng(2)
    n = 100
    mel = rng.normal(-5.0, 1.0, (20, n)).astype(np.float32)
    z = rng.standard_normal(n * HOP).astype(np.float32)
    threads = []
    run = voice.student.run
    monkeypatch.setattr(
        voice.student, "run", lambda *a: threads.append(threading.current_thread().name) or run(*a)
    )
    audio = voice.vocode([mel], [0], [z])[0]
    assert len(threads) == 2 and all(t.startswith("parawave-piece") for t in threads), threads
    whole = run(
        z[None], mel[None], voice.speaker_feed(voice.student, [0]), np.zeros((1, 3, n * HOP), np.float32)
    )[0][0]
    np.testing.assert_allclose(audio, whole, atol=1e-5)


@pytest.mark.parametrize(
    ("threads", "frames", "piece"),
    [
        (1, 100, 100),  # one piece: fits in chunk_frames * 5/4
        (1, 160, 160),
        (1, 273, 91),  # ceil(273 / 128) = 3 pieces
        (2, 100, 50),  # split for the 2 threads
        (2, 273, 69),  # 3 pieces rounded up to 4 (a multiple of the threads)
        (2, 30, 30),  # too short to split: a piece is at least 4x its context (tiny: 3 + 2 frames)
        (4, 60, 20),  # 4 threads but pieces of 15 frames would be too short: 3 pieces
    ],
)
def test_piece_frames(engine, monkeypatch, threads, frames, piece):
    voice = engine.voice("tiny")
    monkeypatch.setattr(voice, "piece_threads", threads)
    assert voice.piece_frames(frames) == piece


def test_student_threads_from_the_settings(monkeypatch):
    monkeypatch.setenv("PARAWAVE_STUDENT_THREADS", "3")
    assert voice_mod.default_piece_threads(_settings().student_threads) == 3
    e = default_engine_loader(_settings())
    assert e.voice("tiny").piece_threads == 3
    monkeypatch.delenv("PARAWAVE_STUDENT_THREADS")
    assert _settings().student_threads is None
    assert 1 <= voice_mod.default_piece_threads() <= voice_mod.MAX_PIECE_THREADS
    assert voice_mod.default_piece_threads(0) == voice_mod.default_piece_threads()


def test_pitch_shifts_the_f0_and_the_student_hears_the_excitation(engine, monkeypatch):
    """The request's pitch reaches the acoustic graph (voiced F0 scaled by 2^(p/12)), and the F0
    reaches the student as its excitation (the audio differs from an unvoiced excitation)."""
    voice = engine.voice("tiny")
    seen = []
    original = voice.vocode

    def spy(mels, speakers, noise, f0s=None):
        seen.append(f0s)
        return original(mels, speakers, noise, f0s)

    monkeypatch.setattr(voice, "vocode", spy)
    text = "Hello there, this is a test."
    base = np.concatenate([c.audio for c in engine.synthesize(req(text, seed=3))])
    up = np.concatenate([c.audio for c in engine.synthesize(req(text, seed=3, pitch=4.0))])
    f0, f4 = seen[0][0], seen[1][0]
    assert (f0 > 0).mean() > 0.2 and np.array_equal(f0 > 0, f4 > 0)
    np.testing.assert_allclose(f4[f0 > 0] / f0[f0 > 0], 2 ** (4 / 12), rtol=1e-4)
    assert up.shape != base.shape or np.abs(up - base).max() > 1e-3
    mel, f = voice.features([prepare_text(text, voice.symbols)[0].ids], [0], [1.0])[0]
    z = np.random.default_rng(0).standard_normal(mel.shape[1] * HOP).astype(np.float32)
    excited, unvoiced = original([mel], [0], [z], [f])[0], original([mel], [0], [z])[0]
    assert np.abs(excited - unvoiced).max() > 1e-3
