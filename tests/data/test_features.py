"""Log-mel features: framing contract, Slaney filterbank, log floor, and the per-clip cache."""

from __future__ import annotations

import numpy as np
import pytest
from corpus_factory import make_corpus, tone

from model.data import features as F
from model.data.audio import load_wav, save_wav
from model.data.config import AudioConfig

CFG = AudioConfig()


def reference_log_mel(audio: np.ndarray, cfg: AudioConfig) -> np.ndarray:
    """The contract spelled out one frame at a time (float64): trim, reflect-pad, centred window."""
    hop, n_fft = cfg.hop_length, cfg.n_fft
    n = len(audio) // hop
    x = audio[: n * hop].astype(np.float64)
    left = (n_fft - hop) // 2
    padded = np.pad(x, (left, n_fft - hop - left), mode="reflect")
    window = F.stft_window(cfg).astype(np.float64)
    fb = F._mel_filterbank(cfg.sample_rate, n_fft, cfg.n_mels, cfg.fmin, cfg.fmax)
    out = np.empty((cfg.n_mels, n))
    for f in range(n):
        frame = padded[f * hop : f * hop + n_fft]  # centred at f*hop + hop/2 of the trimmed audio
        power = np.abs(np.fft.rfft(frame * window)) ** 2
        out[:, f] = np.log(np.maximum(np.sqrt(fb @ power), cfg.log_floor))
    return out


@pytest.mark.parametrize("num_samples", [0, 1, 199, 200, 201, 399, 400, 1_000, 4_123, 16_000, 48_017])
def test_frame_count_contract(num_samples):
    audio = tone(num_samples)
    mel = F.log_mel(audio, CFG)
    frames = num_samples // CFG.hop_length
    assert mel.shape == (CFG.n_mels, frames)
    assert mel.dtype == np.float32
    assert F.num_frames(num_samples, CFG) == frames
    assert frames * CFG.hop_length <= num_samples < (frames + 1) * CFG.hop_length
    assert np.all(np.isfinite(mel))


@pytest.mark.parametrize(
    "cfg", [CFG, AudioConfig(n_fft=512, hop_length=128, win_length=511, n_mels=40, fmin=50.0, fmax=7000.0)]
)
@pytest.mark.parametrize("num_samples", [200, 640, 5_555])
def test_vectorised_matches_per_frame_reference(cfg, num_samples):
    audio = tone(num_samples, seed=num_samples)
    np.testing.assert_allclose(F.log_mel(audio, cfg), reference_log_mel(audio, cfg), atol=2e-4)


def test_samples_beyond_the_last_full_hop_are_ignored():
    audio = tone(3_150)
    tail = audio.copy()
    tail[3_000:] = 0.9  # 3150 // 200 = 15 frames = 3000 samples: the rest must not matter
    np.testing.assert_array_equal(F.log_mel(audio, CFG), F.log_mel(tail, CFG))


@pytest.mark.parametrize("frame", [3, 10, 17])
@pytest.mark.parametrize("offset", [5, 100, 195])
def test_frame_f_describes_samples_f_hop_to_f_plus_one_hop(frame, offset):
    # A click anywhere inside [f*hop, (f+1)*hop) is loudest in frame f: frames are centred there.
    audio = np.zeros(25 * CFG.hop_length, dtype=np.float32)
    audio[frame * CFG.hop_length + offset] = 1.0
    energy = F.power_spectrogram(audio, CFG).sum(axis=1)  # (F,)
    assert int(np.argmax(energy)) == frame


def test_power_spectrogram_matches_torch_stft_recipe():
    # Pins the recipe a torch twin must follow: reflect-pad by frame_padding, center=False.
    torch = pytest.importorskip("torch")
    audio = tone(7_000, seed=3)
    n = len(audio) // CFG.hop_length
    left, right = F.frame_padding(CFG)
    padded = np.pad(audio[: n * CFG.hop_length], (left, right), mode="reflect")
    spec = torch.stft(
        torch.from_numpy(padded).double(),
        n_fft=CFG.n_fft,
        hop_length=CFG.hop_length,
        win_length=CFG.win_length,
        window=torch.hann_window(CFG.win_length, dtype=torch.float64),
        center=False,
        return_complex=True,
    )  # (n_bins, F)
    power = (spec.abs() ** 2).numpy().T
    ours = F.power_spectrogram(audio, CFG)
    assert ours.shape == power.shape == (n, CFG.n_fft // 2 + 1)
    np.testing.assert_allclose(ours, power, rtol=1e-3, atol=1e-3 * power.max())


def test_slaney_mel_scale():
    assert F.hz_to_mel(0.0) == 0.0
    assert F.hz_to_mel(200.0) == pytest.approx(3.0)  # linear part: 200/3 Hz per mel
    assert F.hz_to_mel(1000.0) == pytest.approx(15.0)
    assert F.hz_to_mel(6400.0) == pytest.approx(42.0)  # 27 mel per factor 6.4 above 1 kHz
    hz = np.array([0.0, 50.0, 999.0, 1000.0, 1001.0, 4000.0, 8000.0])
    np.testing.assert_allclose(F.mel_to_hz(F.hz_to_mel(hz)), hz, rtol=1e-10, atol=1e-9)
    assert np.all(np.diff(F.hz_to_mel(np.linspace(0, 8000, 500))) > 0)


def test_filterbank_shape_and_area_normalisation():
    fb = F.mel_filterbank(CFG)
    assert fb.shape == (CFG.n_mels, CFG.n_fft // 2 + 1)
    assert fb.dtype == np.float32
    assert np.all(fb >= 0)
    assert np.all(fb.max(axis=1) > 0)  # no empty filter
    bin_hz = CFG.sample_rate / CFG.n_fft
    edges = F.mel_band_edges(CFG)
    # Each triangle has height 2 / (upper - lower): area 1 in Hz, so every row sums to ~1 / bin_hz
    # (sampling a triangle a few bins wide on the FFT grid costs a few percent).
    np.testing.assert_allclose(fb.sum(axis=1) * bin_hz, 1.0, rtol=0.05)
    wide = (edges[2:] - edges[:-2]) > 8 * bin_hz
    assert wide.sum() > CFG.n_mels // 2
    np.testing.assert_allclose(fb[wide].sum(axis=1) * bin_hz, 1.0, rtol=0.02)
    np.testing.assert_allclose(fb.max(axis=1), 2.0 / (edges[2:] - edges[:-2]), rtol=0.25)
    # Peaks sit at the filter centres, and the highest band ends at fmax.
    peak_hz = fb.argmax(axis=1) * bin_hz
    assert np.all(np.abs(peak_hz - F.mel_center_frequencies(CFG)) <= bin_hz)
    assert edges[-1] == pytest.approx(CFG.fmax)


def test_filterbank_respects_fmin_fmax():
    cfg = AudioConfig(fmin=300.0, fmax=5000.0)
    fb = F.mel_filterbank(cfg)
    freqs = np.linspace(0, cfg.sample_rate / 2, cfg.n_fft // 2 + 1)
    assert fb[:, freqs <= 300.0].sum() == 0
    assert fb[:, freqs >= 5000.0].sum() == 0


@pytest.mark.parametrize("band", [12, 30, 45, 60, 75])
def test_pure_sine_peaks_in_its_mel_band(band):
    freq = float(F.mel_center_frequencies(CFG)[band])
    t = np.arange(CFG.sample_rate) / CFG.sample_rate
    mel = F.log_mel(0.5 * np.sin(2 * np.pi * freq * t).astype(np.float32), CFG)
    assert int(np.argmax(mel[:, 5:-5].mean(axis=1))) == band


def test_log_floor():
    silence = F.log_mel(np.zeros(4_000, dtype=np.float32), CFG)
    np.testing.assert_array_equal(silence, np.float32(np.log(CFG.log_floor)))
    assert F.silence_value(CFG) == pytest.approx(np.log(CFG.log_floor))
    quiet = F.log_mel(1e-7 * tone(4_000), CFG)
    assert quiet.min() >= np.float32(np.log(CFG.log_floor))
    # Above the floor the value is log(sqrt(mel power)): a flat unit power spectrum gives
    # log(sqrt(row sum of the filterbank)) in every band.
    power = np.ones((3, CFG.n_fft // 2 + 1), dtype=np.float32)
    expected = 0.5 * np.log(F.mel_filterbank(CFG).astype(np.float64).sum(axis=1))
    np.testing.assert_allclose(
        F.log_mel_from_power(power, CFG), np.repeat(expected[:, None], 3, 1), rtol=1e-5
    )
    cfg = AudioConfig(log_floor=1e-2)
    assert F.log_mel(np.zeros(1_000, dtype=np.float32), cfg).max() == pytest.approx(np.log(1e-2))


def test_log_mel_rejects_stereo():
    with pytest.raises(ValueError, match="mono"):
        F.log_mel(np.zeros((1_000, 2), dtype=np.float32), CFG)


def test_config_hash_tracks_the_config():
    assert F.config_hash(AudioConfig()) == F.config_hash(AudioConfig())
    assert F.config_hash(AudioConfig()) != F.config_hash(AudioConfig(n_mels=64))
    assert F.config_hash(AudioConfig()) != F.config_hash(AudioConfig(log_floor=1e-4))
    assert F.cache_dir("/c", CFG).as_posix() == f"/c/cache/mel-{F.config_hash(CFG)}"


def test_cache_hit_is_identical_and_skips_the_loader(tmp_path):
    calls = []
    audio = tone(5_000)

    def loader(clip_id):
        calls.append(clip_id)
        return audio

    first = F.cached_log_mel(tmp_path, "clip1", loader, CFG)
    assert calls == ["clip1"]
    path = tmp_path / "cache" / f"mel-{F.config_hash(CFG)}" / "clip1.npy"
    assert path.is_file()
    np.testing.assert_array_equal(np.load(path), first)
    np.testing.assert_array_equal(first, F.log_mel(audio, CFG))

    def must_not_load(clip_id):
        raise AssertionError("cache hit must not load audio")

    second = F.cached_log_mel(tmp_path, "clip1", must_not_load, CFG)
    np.testing.assert_array_equal(first, second)
    assert second.dtype == np.float32
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]  # atomic writes leave no temp


def test_cache_recomputes_bad_or_stale_entries(tmp_path):
    audio = tone(5_000)
    calls = []

    def loader(clip_id):
        calls.append(clip_id)
        return audio

    mel = F.cached_log_mel(tmp_path, "a", loader, CFG)
    path = F.mel_cache_path(tmp_path, "a", CFG)
    path.write_bytes(b"not an npy file")  # truncated/corrupt
    np.testing.assert_array_equal(F.cached_log_mel(tmp_path, "a", loader, CFG), mel)
    assert len(calls) == 2
    # A cached entry of another length (the wav changed) is recomputed when the caller knows F.
    np.save(path, mel[:, :10])
    again = F.cached_log_mel(tmp_path, "a", loader, CFG, expected_frames=mel.shape[1])
    np.testing.assert_array_equal(again, mel)
    assert len(calls) == 3
    # Another config lives in another folder.
    other = F.cached_log_mel(tmp_path, "a", loader, AudioConfig(n_mels=40))
    assert other.shape == (40, mel.shape[1])
    assert F.mel_cache_path(tmp_path, "a", AudioConfig(n_mels=40)).parent != path.parent


def test_cache_reads_the_clip_wav_by_default(tmp_path):
    make_corpus(tmp_path, [("x1", "hello", 3_210)])
    mel = F.cached_log_mel(tmp_path, "x1", None, CFG)
    audio, sr = load_wav(tmp_path / "wavs" / "x1.wav")
    assert sr == CFG.sample_rate
    np.testing.assert_array_equal(mel, F.log_mel(audio, CFG))


def test_clip_audio_is_resampled_to_the_config_rate(tmp_path):
    (tmp_path / "wavs").mkdir()
    save_wav(tmp_path / "wavs" / "r.wav", tone(22_050, sr=22_050), 22_050)
    audio = F.load_clip_audio(tmp_path, "r", CFG)
    assert audio.dtype == np.float32
    assert abs(audio.shape[0] - 16_000) <= 1
    assert F.cached_log_mel(tmp_path, "r", None, CFG).shape == (CFG.n_mels, audio.shape[0] // CFG.hop_length)


def test_compute_corpus_mels_parallel_and_resumable(tmp_path):
    clips = [(f"c{i}", f"text {i}", 1_000 + 700 * i) for i in range(6)]
    make_corpus(tmp_path, clips)
    (tmp_path / "metadata.csv").write_text(
        (tmp_path / "metadata.csv").read_text() + "missing|no wav|no wav\n", encoding="utf-8"
    )
    stats = F.compute_corpus_mels(tmp_path, CFG, jobs=2, progress=False)
    assert stats["computed"] == 6 and stats["cached"] == 0
    assert list(stats["failed"]) == ["missing"]
    assert stats["frames"] == sum(n // CFG.hop_length for _, _, n in clips)
    for clip_id, _, _ in clips:
        audio, _ = load_wav(tmp_path / "wavs" / f"{clip_id}.wav")
        np.testing.assert_array_equal(
            np.load(F.mel_cache_path(tmp_path, clip_id, CFG)), F.log_mel(audio, CFG)
        )
    assert (F.cache_dir(tmp_path, CFG) / "config.json").is_file()
    again = F.compute_corpus_mels(tmp_path, CFG, jobs=2, progress=False)
    assert again["computed"] == 0 and again["cached"] == 6 and list(again["failed"]) == ["missing"]
