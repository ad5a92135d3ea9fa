"""model.data.audio: load/save round trips through soundfile and through the scipy fallback."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.io import wavfile

from model.data import audio as A

SR = 16_000


@pytest.fixture(params=["soundfile", "scipy"])
def backend(request, monkeypatch):
    if request.param == "soundfile":
        if A._sf is None:
            pytest.skip("soundfile is not importable here; the scipy path is still tested")
    else:
        monkeypatch.setattr(A, "_sf", None)  # what the GPU host (no soundfile) runs
    assert A.backend() == request.param
    return request.param


def sine(n: int = SR // 4, amp: float = 0.5, freq: float = 440.0) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * freq * np.arange(n) / SR)).astype(np.float32)


def test_round_trip(tmp_path, backend):
    x = sine()
    path = tmp_path / "a.wav"
    A.save_wav(path, x, SR)
    y, sr = A.load_wav(path)
    assert sr == SR
    assert y.dtype == np.float32 and y.shape == x.shape
    assert np.max(np.abs(y - x)) <= 1.0 / 32767 + 1e-6  # PCM16 quantization only
    assert A.wav_info(path) == (SR, len(x), 1)
    # the file really is 16-bit PCM, whatever wrote it
    sr2, raw = wavfile.read(path)
    assert sr2 == SR and raw.dtype == np.int16
    assert list(tmp_path.iterdir()) == [path]  # no temp file left behind


def test_save_clips_to_full_scale(tmp_path, backend):
    x = np.array([-3.0, -1.0, -0.5, 0.0, 0.5, 1.0, 3.0], dtype=np.float32)
    A.save_wav(tmp_path / "c.wav", x, SR)
    _, raw = wavfile.read(tmp_path / "c.wav")
    assert raw.tolist() == [-32767, -32767, -16384, 0, 16384, 32767, 32767]
    y, _ = A.load_wav(tmp_path / "c.wav")
    assert np.all(np.abs(y) <= 1.0)


def test_save_rejects_nan_and_stereo(tmp_path, backend):
    with pytest.raises(ValueError, match="NaN"):
        A.save_wav(tmp_path / "n.wav", np.array([0.0, np.nan], dtype=np.float32), SR)
    with pytest.raises(ValueError, match="mono"):
        A.save_wav(tmp_path / "s.wav", np.zeros((10, 2), dtype=np.float32), SR)
    assert list(tmp_path.iterdir()) == []


def test_stereo_is_mixed_to_mono(tmp_path, backend):
    left = np.full(100, 16384, dtype=np.int16)
    right = np.full(100, -8192, dtype=np.int16)
    wavfile.write(tmp_path / "st.wav", 22_050, np.stack([left, right], axis=1))
    y, sr = A.load_wav(tmp_path / "st.wav")
    assert sr == 22_050 and y.shape == (100,)
    np.testing.assert_allclose(y, (0.5 - 0.25) / 2, atol=1e-4)
    both, _ = A.load_wav(tmp_path / "st.wav", mono=False)
    assert both.shape == (100, 2)
    assert A.wav_info(tmp_path / "st.wav") == (22_050, 100, 2)


@pytest.mark.parametrize(
    ("dtype", "value", "expected"),
    [(np.int16, -32768, -1.0), (np.int32, 2**30, 0.5), (np.uint8, 192, 0.5), (np.float32, 0.25, 0.25)],
)
def test_other_sample_formats(tmp_path, backend, dtype, value, expected):
    wavfile.write(tmp_path / "f.wav", SR, np.full(50, value, dtype=dtype))
    y, _ = A.load_wav(tmp_path / "f.wav")
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, expected, atol=1e-6)


def test_unreadable_file_raises(tmp_path, backend):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00not a wav at all")
    with pytest.raises(Exception):  # noqa: B017 - the two backends raise different types
        A.load_wav(bad)
    with pytest.raises(Exception):  # noqa: B017
        A.wav_info(bad)
