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

from model.checkpoint import check_kind
from model.data.config import AudioConfig
from model.data.excitation import EXCITATION_PHASES
from model.distributions import gaussian_nll
from model.teacher import MODEL_KIND, PRESETS, TeacherConfig, TeacherWaveNet
from model.train.common import (
    TrainArgs,
    TrainConfig,
    TrainTask,
    UserError,
    infinite_batches,
    load_checkpoint,
    log_vocoder_sample,
    make_loader,
    pick_eval_split,
    prepare_run,
    preset_sections,
    reject_model_audio_sets,
    resolve_device,
    resumed_sections,
    run_training,
)

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
        steps=200,
        batch_size=4,
        segment_frames=4,
        val_segment_frames=4,
        lr=1e-2,
        warmup_steps=5,
        ema_decay=0.99,
        num_workers=0,
        threads=1,
        log_every=5,
        val_every=0,
        val_batches=2,
        sample_every=-1,
        sample_seconds=0.05,
    ),
    "cpu": TeacherTrainConfig(
        steps=20_000,
        batch_size=4,
        segment_frames=16,
        val_segment_frames=40,
        lr=1e-3,
        warmup_steps=500,
        ema_decay=0.999,
        num_workers=1,
        threads=1,  # on a shared 2-core host two intra-op threads were measured 4x slower than one
        compile=True,  # issue 16: with CPU bf16, ~3.5x the fp32 Conv1d step (bench/results)
        log_every=50,
        val_every=1000,
        val_batches=8,
        sample_every=5000,
        sample_seconds=0.25,
        checkpoint_minutes=10.0,
    ),
    "gpu": TeacherTrainConfig(
        steps=30_000,
        batch_size=32,
        segment_frames=40,
        lr=1e-3,
        warmup_steps=1000,
        ema_decay=0.9999,
        precision="bf16",
        num_workers=8,
        log_every=100,
        val_every=2000,
        val_batches=16,
        sample_every=10_000,
        sample_seconds=0.5,
        checkpoint_minutes=5.0,
    ),
}


class TeacherTask(TrainTask):
    kind = MODEL_KIND

    def __init__(self, model_cfg: TeacherConfig, train_cfg: TeacherTrainConfig, audio: AudioConfig, corpus):
        if model_cfg.hop_length != audio.hop_length:  # the upsampling factor must be the feature hop
            raise ValueError(f"model hop {model_cfg.hop_length} != audio hop {audio.hop_length}")
        if model_cfg.sample_rate != audio.sample_rate or model_cfg.n_mels != audio.n_mels:
            raise ValueError("model sample_rate/n_mels do not match the audio config")
        self.model_cfg = model_cfg
        self.train_cfg = train_cfg
        self.audio = audio
        self.corpus = corpus
        self.model = TeacherWaveNet(model_cfg)
        self.eval_split = pick_eval_split(corpus, "fixed train windows")

    def config_dict(self) -> dict:
        return {
            "model": self.model_cfg.to_dict(),
            "train": self.train_cfg.to_dict(),
            "audio": self.audio.to_dict(),
            "data": {"corpus": str(self.corpus.path), "speakers": list(self.corpus.speakers)},
        }

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

    def log_samples(self, model: nn.Module, writer, step: int, device: torch.device) -> None:
        log_vocoder_sample(
            model,
            writer,
            step,
            device,
            corpus=self.corpus,
            split=self.eval_split,
            audio_cfg=self.audio,
            sample_seconds=self.train_cfg.sample_seconds,
            temperature=self.train_cfg.sample_temperature,
            audio_tag="sample/generated",
            label="teacher",
        )


def _init_checkpoint(path) -> dict:
    return check_kind(load_checkpoint(path), MODEL_KIND, f"--init {path}")


def _init_model_config(saved: dict, requested: TeacherConfig) -> TeacherConfig:
    """The --init checkpoint's architecture (a fresh run takes it whole), gaining the per-layer
    excitation when the run asks for it (``--set model.excitation_layers=true``); never losing it."""
    cfg = TeacherConfig.from_dict(dict(saved))
    if requested.excitation_layers and not cfg.excitation_layers:
        if not cfg.excitation_channels:
            raise UserError("--init: a mel-only teacher cannot gain a per-layer excitation")
        cfg = replace(cfg, excitation_layers=True)
    return cfg


def _load_init_weights(model: TeacherWaveNet, ckpt: dict, path) -> None:
    """The --init checkpoint's (EMA) weights; a per-layer excitation it lacks stays at its zero
    initialisation, so the new run starts exactly where that teacher was."""
    result = model.load_state_dict(ckpt.get("ema") or ckpt["model"], strict=False)
    missing = [k for k in result.missing_keys if not k.startswith("stack.excitation_proj.")]
    if missing or result.unexpected_keys:
        raise UserError(
            f"--init {path} does not fit this teacher: missing {missing[:3]}, unexpected {result.unexpected_keys[:3]}"
        )
    log.info(
        "teacher weights initialised from %s (step %s; %d new per-layer excitation tensors at zero)",
        path,
        ckpt.get("step"),
        len(result.missing_keys),
    )


def train(args: TrainArgs) -> dict:
    """Entry point of ``parawave train teacher`` (see model.train.cli). Returns run_training's summary.
    ``args.extra["init"]``: start a fresh run (new schedule) from that teacher checkpoint's weights."""
    from model.data.corpus import Corpus, CorpusError

    run, ckpt = prepare_run(args)
    try:
        corpus = Corpus(args.data)
    except CorpusError as exc:
        raise UserError(str(exc)) from None
    classes = {"model": TeacherConfig, "train": TeacherTrainConfig, "audio": AudioConfig}
    reject_model_audio_sets(args.sets)
    init = args.extra.get("init")
    init_ckpt = None
    if ckpt is not None:
        if init is not None:
            raise UserError("--init starts a fresh run: it cannot be combined with --resume of a saved run")
        sections = resumed_sections(ckpt, run, args, classes, MODEL_KIND, "a teacher", corpus.speakers)
    else:
        sections = preset_sections(args, PRESETS, TRAIN_PRESETS, AudioConfig())
        if init is not None:
            init_ckpt = _init_checkpoint(init)
            saved_speakers = list(init_ckpt["config"].get("data", {}).get("speakers", []))
            if saved_speakers != list(corpus.speakers):
                raise UserError(
                    f"--init {init}: its speakers {saved_speakers} differ from the corpus' {corpus.speakers}"
                )
            if AudioConfig.from_dict(init_ckpt["config"]["audio"]) != sections["audio"]:
                raise UserError(f"--init {init}: its audio settings differ from this run's")
            sections["model"] = _init_model_config(init_ckpt["config"]["model"], sections["model"])
        audio = sections["audio"]
        sections["model"] = replace(
            sections["model"],
            sample_rate=audio.sample_rate,
            hop_length=audio.hop_length,
            n_mels=audio.n_mels,
            n_speakers=len(corpus.speakers),
            n_fft=audio.n_fft,
            fmin=audio.fmin,
            fmax=audio.fmax,
        )
    device = resolve_device(args.device)
    torch.manual_seed(sections["train"].seed)  # the initial weights depend on the seed only
    task = TeacherTask(sections["model"], sections["train"], sections["audio"], corpus)
    if init_ckpt is not None:
        _load_init_weights(task.model, init_ckpt, init)
    return run_training(
        task,
        sections["train"],
        run,
        device=device,
        resume_from=ckpt,
        max_steps=args.max_steps,
        max_minutes=args.max_minutes,
        max_cpu_minutes=args.max_cpu_minutes,
    )
