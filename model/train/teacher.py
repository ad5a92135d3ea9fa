"""``parawave train teacher``: the WaveNet teacher by teacher forcing on random frame-aligned windows.

Loss: Gaussian negative log-likelihood of every sample of the window given the previous ones and
the mel (nats per sample; with the -7 log-scale floor it is bounded below by about -6.08). Data:
:class:`model.data.dataset.VocoderDataset` windows of ``segment_frames`` frames, with the window's
excitation (Praat F0 -> :func:`core.excitation.excitation`) when the teacher has
``excitation_channels``. Validation: NLL of the EMA model on fixed windows of the val split.
Samples: the EMA model generates the first ``sample_seconds`` of the first validation clip, excited
by its F0 (TensorBoard audio + mel figure vs the real one).
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn

from model.checkpoint import UserError
from model.data.config import AudioConfig
from model.data.excitation import EXCITATION_PHASES
from model.distributions import gaussian_nll
from model.teacher import MODEL_KIND, PRESETS, TeacherConfig, TeacherWaveNet
from model.train.config import TINY_PRESET, VOCODER_PRESETS, TrainArgs, TrainConfig
from model.train.loaders import infinite_batches, make_loader
from model.train.setup import ModelSpec, prepare
from model.train.task import VocoderTask

__all__ = ["TRAIN_PRESETS", "TeacherTask", "TeacherTrainConfig", "train"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TeacherTrainConfig(TrainConfig):
    segment_frames: int = 40  # training window: 40 frames = 0.5 s at hop 200 / 16 kHz
    val_segment_frames: int = 80
    sample_seconds: float = 0.5  # generated per TensorBoard sample (autoregressive: slow)
    sample_temperature: float = 1.0
    # std of Gaussian noise on the teacher-forced past (audio units; recordings' RMS is ~0.09), 0 = off:
    # the past stops being a clean copy, so pitch must come from the conditioning (the excitation)
    past_noise: float = 0.0
    # the windows' excitation phase: "f0" (F0 integrated from 0 at the window, as at inference) or
    # "recording" (locked to the window's first harmonic, so it predicts samples the past does not)
    excitation_phase: str = "f0"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.past_noise >= 0:  # also refuses NaN
            raise ValueError(f"past_noise must be >= 0, got {self.past_noise}")
        if self.excitation_phase not in EXCITATION_PHASES:
            raise ValueError(
                f"excitation_phase must be one of {', '.join(EXCITATION_PHASES)}, got {self.excitation_phase!r}"
            )


TRAIN_PRESETS: dict[str, TeacherTrainConfig] = {
    "tiny": TeacherTrainConfig(
        **TINY_PRESET, segment_frames=4, val_segment_frames=4, lr=1e-2, sample_seconds=0.05
    ),
    "cpu": TeacherTrainConfig(
        **VOCODER_PRESETS["cpu"],
        steps=20_000,
        segment_frames=16,
        val_segment_frames=40,
        threads=1,  # on a shared 2-core host two intra-op threads were measured 4x slower than one
        sample_seconds=0.25,
    ),
    "gpu": TeacherTrainConfig(**VOCODER_PRESETS["gpu"], steps=30_000, batch_size=32, sample_seconds=0.5),
}


class TeacherTask(VocoderTask):
    kind = MODEL_KIND

    def __init__(self, model_cfg: TeacherConfig, train_cfg: TeacherTrainConfig, audio: AudioConfig, corpus):
        super().__init__(model_cfg, train_cfg, audio, corpus)
        self.model = TeacherWaveNet(model_cfg)

    def train_batches(self, device: torch.device):
        from model.data.dataset import VocoderDataset, collate_vocoder

        cfg = self.train_cfg
        excite = self.model_cfg.excitation_channels > 0
        dataset = VocoderDataset(
            self.corpus,
            "train",
            self.audio,
            cfg.segment_frames,
            excitation=excite,
            excitation_phase=cfg.excitation_phase,
        )
        loader = make_loader(dataset, cfg.batch_size, collate_vocoder, cfg.num_workers, cfg.seed, device)
        return infinite_batches(loader)

    def loss(self, model: nn.Module, batch: dict) -> tuple[Tensor, dict]:
        audio = batch["audio"]  # (B, T)
        excitation = batch.get("excitation")  # (B, 3, T), aligned with audio; None for a mel-only teacher
        noise = self.train_cfg.past_noise if model.training else 0.0
        mean, log_scale = model(audio, batch["mel"], batch["speaker"], excitation, noise)  # (B, T) each, fp32
        nll = gaussian_nll(audio, mean, log_scale)
        return nll, {"log_scale": log_scale.detach().mean()}

    def validate(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        from torch.utils.data import DataLoader

        from model.data.dataset import VocoderDataset, collate_vocoder
        from model.validation.nll import windows_nll_by_class

        cfg = self.train_cfg
        excite = self.model_cfg.excitation_channels > 0
        dataset = VocoderDataset(
            self.corpus,
            self.eval_split,
            self.audio,
            cfg.val_segment_frames,
            seed=0,
            excitation=excite,
            excitation_phase=cfg.excitation_phase,
        )
        loader = DataLoader(dataset, batch_size=cfg.batch_size, shuffle=False, collate_fn=collate_vocoder)
        sums = windows_nll_by_class(
            model, itertools.islice(loader, cfg.val_batches), device, hop=self.audio.hop_length
        )
        total, count = sums.pop("all")
        # the loss selects best.pt; the per-class NLLs say where the density improves (issue 38)
        return {"loss": total / max(count, 1)} | {f"nll_{k}": s / n for k, (s, n) in sums.items() if n}


def _init_config(saved: dict, requested: TeacherConfig) -> TeacherConfig:
    """The --init checkpoint's architecture (a fresh run takes it whole), gaining the per-layer
    excitation when the run asks for it (``--set model.excitation_layers=true``); never losing it."""
    cfg = TeacherConfig.from_dict(saved)
    if requested.excitation_layers and not cfg.excitation_layers:
        if not cfg.excitation_channels:
            raise UserError("--init: a mel-only teacher cannot gain a per-layer excitation")
        cfg = replace(cfg, excitation_layers=True)
    return cfg


SPEC = ModelSpec(
    MODEL_KIND,
    TeacherConfig,
    TeacherTrainConfig,
    PRESETS,
    TRAIN_PRESETS,
    _init_config,
    audio_fields=("sample_rate", "hop_length", "n_mels", "n_fft", "fmin", "fmax"),
    # a per-layer excitation the --init teacher lacks starts at zero: the run starts where it was
    new_weight=lambda key: key.startswith("stack.excitation_proj."),
)


def train(args: TrainArgs) -> dict:
    """Entry point of ``parawave train teacher`` (see model.train.cli). Returns run_training's summary.
    ``args.init``: start a fresh run (new schedule) from that teacher checkpoint's weights."""
    setup = prepare(args, SPEC)
    task = setup.build(lambda: TeacherTask(setup.model_cfg, setup.train_cfg, setup.audio, setup.corpus))
    return setup.train(task)
