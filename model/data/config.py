"""Audio and mel-feature configuration shared by every model, export and the runtime bundle.

Contract (the vocoders rely on it): an utterance of ``frames`` mel frames covers exactly
``frames * hop_length`` samples. Feature extraction trims/pads audio to that length.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class AudioConfig:
    sample_rate: int = 16_000
    n_fft: int = 1024
    hop_length: int = 200  # 12.5 ms at 16 kHz; the vocoders' upsampling product must equal this
    win_length: int = 800  # 50 ms
    n_mels: int = 80
    fmin: float = 0.0
    fmax: float = 8000.0
    log_floor: float = 1e-5  # mel = log(max(floor, mel_power ** 0.5))

    def __post_init__(self) -> None:
        if self.win_length > self.n_fft:
            raise ValueError(f"win_length {self.win_length} > n_fft {self.n_fft}")
        if not 0 <= self.fmin < self.fmax <= self.sample_rate / 2:
            raise ValueError(f"need 0 <= fmin < fmax <= sample_rate/2, got {self.fmin}, {self.fmax}")
        if self.hop_length <= 0 or self.n_mels <= 0:
            raise ValueError("hop_length and n_mels must be positive")

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> AudioConfig:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})
