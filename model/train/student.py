"""``parawave train student --teacher CKPT``: probability density distillation of the IAF student.

Per step, on random frame-aligned windows (:class:`model.data.dataset.VocoderDataset`):

    z ~ N(0, I)                                    (B, T)
    x, mean_q, log_scale_q = student(z, mel, speaker, return_params=True)     one parallel pass
    mean_p, log_scale_p    = teacher(x, mel, speaker, excitation)    one teacher-forced pass over
                                                          the student's own sample, with the same
                                                          excitation; the teacher is frozen (EMA
                                                          weights), gradients flow through it into x
    loss = kl_weight * mean_t KL(q_t || p_t)  +  reg_weight * mean_t (log s_q - log s_p)^2
         + stft_weight * multi-resolution STFT(x, real audio)

(see :mod:`model.losses`).

Adversarial training (issue 37; GAN-based density distillation, Yamamoto et al. 2019; in
:mod:`model.train.adversarial`), on when ``adv_weight > 0`` (``adv_weight = 0``: no discriminator is
built, the trainer above unchanged):
multi-period and multi-resolution discriminators (:mod:`model.discriminators`) with their own Adam
(``disc_lr``, ``disc_betas``) and warm-up + cosine schedule, trained from step ``disc_start`` on the
least-squares loss (real -> 1, the student's detached sample -> 0), one discriminator update per
step, before the student's. Their losses reach the student ``disc_warmup`` steps later, ramped
linearly over ``adv_ramp`` steps to

    + adv_weight * LS-GAN(D(x) -> 1) + fm_weight * L1 feature matching(D(x), D(real audio))

(the discriminators frozen in that pass). The discriminators and their optimiser and schedule are
saved in the training checkpoint's "aux" section (restored on resume), never in "model"/"ema".
Validation ("loss", which selects best.pt) stays the STFT (+ KL) terms, comparable across runs.

Without ``--teacher`` the run is *spectral-only*: loss = stft_weight * multi-resolution STFT, no KL
(ClariNet reports that the STFT loss alone gives whispery, unvoiced speech: it is a warm start for a
later distillation, or the only option while no trained teacher exists). ``--init CKPT`` starts a
fresh run from another student checkpoint's weights (its architecture), e.g. distillation after a
spectral-only warm start.

The teacher is not part of the trained model: it is neither saved in
the student's checkpoints nor averaged by the EMA; its path, step and config are recorded in the
checkpoint's config ("teacher") and a resumed run checks that the same teacher is given.

Initialisation: every flow starts as the identity (zero heads, see :mod:`model.student`); when the
student's conditioning network has the teacher's shape (same channels, layers, kernel, speakers),
it starts from the teacher's trained one (``init_cond_from_teacher``).

Validation (EMA weights, fixed windows and fixed noise): kl, reg, stft and their weighted sum
"loss" (selects best.pt). Samples: the first ``sample_seconds`` of the first validation clip,
synthesized in one pass (TensorBoard audio + mel figure with the real one).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from model.checkpoint import UserError, check_kind, load_checkpoint
from model.data.config import AudioConfig
from model.discriminators import DiscConfig
from model.losses import MultiResolutionSTFTLoss, distillation_kl
from model.student import MODEL_KIND, PRESETS, StudentConfig, StudentIAF
from model.teacher import TeacherWaveNet, teacher_from_checkpoint
from model.train.config import TINY_PRESET, VOCODER_PRESETS, TrainArgs, TrainConfig
from model.train.loaders import infinite_batches, make_loader
from model.train.setup import ModelSpec, prepare
from model.train.task import VocoderTask

__all__ = ["TRAIN_PRESETS", "StudentTask", "StudentTrainConfig", "init_conditioning_from_teacher", "train"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StudentTrainConfig(TrainConfig):
    segment_frames: int = 20  # training window: 20 frames = 0.25 s at hop 200 / 16 kHz
    val_segment_frames: int = 40
    kl_weight: float = 1.0
    reg_weight: float = 4.0  # ClariNet's lambda on (log s_q - log s_p)^2
    stft_weight: float = 1.0
    stft_ffts: tuple[int, ...] = (1024, 512, 256)  # hop fft/4, Hann window of the FFT's length
    stft_sc_weight: float = 1.0
    stft_mag_weight: float = 1.0
    stft_power_weight: float = 0.0  # Parallel WaveNet's power loss (on log power), off by default
    init_cond_from_teacher: bool = True
    sample_seconds: float = 2.0  # synthesized per TensorBoard sample (one parallel pass: cheap)
    sample_temperature: float = 1.0
    # adversarial training (issue 37): adv_weight 0 = none (no discriminator built)
    adv_weight: float = 0.0
    fm_weight: float = 2.0  # feature matching, only with adv_weight > 0
    disc_start: int = 0  # the step the discriminators start training (the student's spectral head start)
    disc_warmup: int = 200  # discriminator-only steps before its losses reach the student
    adv_ramp: int = 300  # then adv/fm weights ramp linearly from 0 over this many steps
    disc_kinds: tuple[str, ...] = ("mpd", "mrd")
    disc_periods: tuple[int, ...] = (2, 3, 5, 7, 11)
    disc_mpd_channels: int = 16
    disc_resolutions: tuple[int, ...] = (512, 1024, 256)  # MRD FFT sizes (hop fft/4)
    disc_mrd_channels: int = 16
    disc_lr: float = 2e-4
    disc_compile: bool = False  # torch.compile the discriminators too (when ``compile``); see gan-ab report
    disc_betas: tuple[float, float] = (0.8, 0.99)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.adv_weight < 0 or self.fm_weight < 0:
            raise ValueError("adv_weight and fm_weight must be >= 0")
        if min(self.disc_start, self.disc_warmup, self.adv_ramp) < 0:
            raise ValueError("disc_start, disc_warmup and adv_ramp must be >= 0")
        if self.adv_weight > 0:
            self.disc_config()  # validates the kinds, periods, resolutions, widths

    def disc_config(self) -> DiscConfig:
        return DiscConfig(
            kinds=self.disc_kinds,
            periods=self.disc_periods,
            mpd_channels=self.disc_mpd_channels,
            resolutions=self.disc_resolutions,
            mrd_channels=self.disc_mrd_channels,
        )

    def adv_scale(self, step: int) -> float:
        """The factor on adv_weight / fm_weight at ``step``: 0 before ``disc_start + disc_warmup``,
        then a linear ramp to 1 over ``adv_ramp`` steps."""
        begin = self.disc_start + self.disc_warmup
        if step < begin:
            return 0.0
        if self.adv_ramp == 0:
            return 1.0
        return min(1.0, (step - begin + 1) / self.adv_ramp)


TRAIN_PRESETS: dict[str, StudentTrainConfig] = {
    "tiny": StudentTrainConfig(
        **TINY_PRESET,
        segment_frames=4,
        val_segment_frames=4,
        stft_ffts=(256, 128, 64),
        lr=3e-3,
        sample_seconds=0.1,
    ),
    # compile (issue 16): the student and its frozen teacher (bench/results)
    "cpu": StudentTrainConfig(**VOCODER_PRESETS["cpu"], steps=50_000, segment_frames=20),
    "gpu": StudentTrainConfig(
        **VOCODER_PRESETS["gpu"],
        steps=100_000,
        batch_size=16,
        val_segment_frames=80,
        stft_ffts=(2048, 1024, 512, 256),
    ),
}


def init_conditioning_from_teacher(student: StudentIAF, teacher: TeacherWaveNet) -> bool:
    """Copy the teacher's conditioning network into the student's when every tensor has the same
    name and shape (same mel normalisation, channels, layers, kernel, speaker embedding). Returns
    whether it did."""
    s_cfg, t_cfg = student.cfg, teacher.cfg
    if (s_cfg.mel_mean, s_cfg.mel_std) != (t_cfg.mel_mean, t_cfg.mel_std):
        return False
    mine, theirs = student.conditioning.state_dict(), teacher.conditioning.state_dict()
    if mine.keys() != theirs.keys() or any(mine[k].shape != theirs[k].shape for k in mine):
        return False
    student.conditioning.load_state_dict(theirs)
    return True


class StudentTask(VocoderTask):
    kind = MODEL_KIND
    sample_tag = "sample/student"

    def __init__(
        self,
        model_cfg: StudentConfig,
        train_cfg: StudentTrainConfig,
        audio: AudioConfig,
        corpus,
        teacher: TeacherWaveNet | None,
        teacher_info: dict,
    ):
        super().__init__(model_cfg, train_cfg, audio, corpus)
        if teacher is not None:
            t = teacher.cfg
            for name in ("sample_rate", "hop_length", "n_mels", "n_speakers"):
                if getattr(t, name) != getattr(model_cfg, name):
                    raise UserError(
                        f"teacher {name} {getattr(t, name)} != student's {getattr(model_cfg, name)}"
                    )
            teacher = teacher.eval()
            for p in teacher.parameters():
                p.requires_grad_(False)
        self.teacher_info = teacher_info
        self.teacher = teacher
        self._train_teacher: nn.Module | None = None  # the compiled teacher of the training steps
        self.model = StudentIAF(model_cfg)
        self.stft = MultiResolutionSTFTLoss(
            train_cfg.stft_ffts,
            train_cfg.stft_sc_weight,
            train_cfg.stft_mag_weight,
            train_cfg.stft_power_weight,
        )
        self.adversary = None  # the discriminators (model.train.adversarial), when adv_weight > 0
        if train_cfg.adv_weight > 0:
            from model.train.adversarial import Adversary

            self.adversary = Adversary(train_cfg)
        self.cond_from_teacher = False
        if train_cfg.init_cond_from_teacher and teacher is not None:
            self.cond_from_teacher = init_conditioning_from_teacher(self.model, self.teacher)
            if self.cond_from_teacher:
                log.info("student conditioning network initialised from the teacher's")
            else:
                log.info("student conditioning network differs in shape from the teacher's: random init")

    def config_dict(self) -> dict:
        return super().config_dict() | {"teacher": dict(self.teacher_info)}

    @property
    def excite(self) -> bool:
        """Whether the batches carry the excitation: the student or the teacher hears it (a mel-only
        model ignores it)."""
        teacher = self.teacher.cfg.excitation_channels if self.teacher is not None else 0
        return self.model_cfg.excitation_channels > 0 or teacher > 0

    def _on(self, device: torch.device) -> None:
        if self.teacher is not None:
            self.teacher.to(device)
            if self.train_cfg.compile and self._train_teacher is None:  # issue 16: training steps only
                from model.train.precision import compile_module

                self._train_teacher = compile_module(self.teacher, device)
        if self.adversary is not None:
            self.adversary.to(device)
        self.stft.to(device)

    def train_batches(self, device: torch.device):
        from model.data.dataset import VocoderDataset, collate_vocoder

        self._on(device)
        cfg = self.train_cfg
        dataset = VocoderDataset(self.corpus, "train", self.audio, cfg.segment_frames, excitation=self.excite)
        loader = make_loader(dataset, cfg.batch_size, collate_vocoder, cfg.num_workers, cfg.seed, device)
        return infinite_batches(loader)

    def aux_state_dict(self) -> dict | None:
        return None if self.adversary is None else self.adversary.state_dict()

    def load_aux_state_dict(self, state: dict | None) -> None:
        if self.adversary is not None:
            self.adversary.load_state_dict(state)
        elif state is not None and "disc" in state:
            log.info("resumed without adversarial training: the saved discriminators are dropped")

    def losses(
        self,
        model: nn.Module,
        batch: dict,
        noise: Tensor | None = None,
        teacher: nn.Module | None = None,
        adversarial: bool = False,
    ) -> dict[str, Tensor]:
        """Every term for one batch: {"loss", "kl", "reg", "stft", "sc", "logmag", "power", "log_scale"}
        (no "kl"/"reg" in a spectral-only run). ``teacher``: a compiled wrapper of ``self.teacher``.
        ``adversarial`` (training steps): also update the discriminators and add the adversarial
        terms ("d_real", "d_fake", "d_loss", "adv", "fm", "adv_scale", "disc_lr") when they are on."""
        cfg = self.train_cfg
        audio, mel, speaker = batch["audio"], batch["mel"], batch["speaker"]  # (B, T), (B, n_mels, F), (B,)
        z = torch.randn_like(audio) if noise is None else noise
        excitation = batch.get("excitation")  # (B, 3, T) or None (mel-only student and teacher)
        x, mean_q, log_scale_q = model(
            z, mel, speaker, return_params=True, excitation=excitation
        )  # (B, T) each
        stft = self.stft(x, audio)
        loss = cfg.stft_weight * stft["loss"]
        terms: dict[str, Tensor] = {}
        if self.teacher is not None:
            # teacher forced on the student's sample, with the excitation the student saw
            teacher = self.teacher if teacher is None else teacher
            mean_p, log_scale_p = teacher(x, mel, speaker, excitation)
            kl, reg = distillation_kl(
                mean_q, log_scale_q, mean_p, log_scale_p, self.teacher.cfg.log_scale_min
            )
            terms = {"kl": kl.mean(), "reg": reg.mean()}
            loss = loss + cfg.kl_weight * terms["kl"] + cfg.reg_weight * terms["reg"]
        if adversarial and self.adversary is not None:
            adv_loss, adv_terms = self.adversary.loss(x, audio, self.step)
            terms |= adv_terms
            if adv_loss is not None:
                loss = loss + adv_loss
        return {
            "loss": loss,
            **terms,
            "stft": stft["loss"],
            "sc": stft["sc"],
            "logmag": stft["logmag"],
            "power": stft["power"],
            "log_scale": log_scale_q.detach().mean(),
        }

    def loss(self, model: nn.Module, batch: dict) -> tuple[Tensor, dict]:
        terms = self.losses(model, batch, teacher=self._train_teacher, adversarial=True)
        loss = terms.pop("loss")
        return loss, {k: v.detach() for k, v in terms.items()}

    def validate(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        from torch.utils.data import DataLoader

        from model.data.dataset import VocoderDataset, collate_vocoder

        self._on(device)
        cfg = self.train_cfg
        dataset = VocoderDataset(
            self.corpus, self.eval_split, self.audio, cfg.val_segment_frames, seed=0, excitation=self.excite
        )
        loader = DataLoader(dataset, batch_size=cfg.batch_size, shuffle=False, collate_fn=collate_vocoder)
        gen = torch.Generator().manual_seed(0)  # the same noise at every validation
        totals: dict[str, float] = {}
        count = 0
        for i, batch in enumerate(loader):
            if i >= cfg.val_batches:
                break
            batch = {k: (v.to(device) if isinstance(v, Tensor) else v) for k, v in batch.items()}
            noise = torch.randn(batch["audio"].shape, generator=gen).to(device)
            n = batch["audio"].shape[0]
            for k, v in self.losses(model, batch, noise).items():
                totals[k] = totals.get(k, 0.0) + float(v) * n
            count += n
        return {k: v / max(count, 1) for k, v in totals.items()}


def _load_teacher(path: Path | None) -> tuple[TeacherWaveNet | None, dict]:
    if path is None:
        log.warning(
            "no --teacher: spectral-only training (STFT loss, no distillation); expect whispery speech "
            "until the student is distilled from a trained teacher"
        )
        return None, {"path": None, "step": 0, "config": None, "speakers": [], "audio": None}
    ckpt = check_kind(load_checkpoint(path), "teacher", path)
    teacher = teacher_from_checkpoint(ckpt, ema=True)  # EMA weights, weight norm folded, eval mode
    info = {
        "path": str(path),
        "step": int(ckpt.get("step", 0)),
        "config": dict(ckpt["config"]["model"]),
        "speakers": list(ckpt["config"].get("data", {}).get("speakers", [])),
        "audio": dict(ckpt["config"]["audio"]),
    }
    return teacher, info


def _init_config(saved: dict, requested: StudentConfig) -> StudentConfig:
    """The architecture of the --init checkpoint (a fresh run takes it whole; --set model.* is ignored),
    with the run's ``excitation_channels`` when the checkpoint predates excitation: a mel-only student
    gains zero-initialised excitation convs and starts exactly where it was."""
    saved.setdefault("excitation_channels", requested.excitation_channels)
    return StudentConfig.from_dict(saved)


SPEC = ModelSpec(
    MODEL_KIND,
    StudentConfig,
    StudentTrainConfig,
    PRESETS,
    TRAIN_PRESETS,
    _init_config,
    new_weight=lambda key: ".excitation_conv." in key,  # a mel-only --init: the excitation at zero
)


def _check_teacher(
    setup, teacher: TeacherWaveNet | None, teacher_info: dict, base_audio: AudioConfig
) -> None:
    """The teacher fits the run: the corpus' speakers, a fresh run's audio settings, a resumed run's
    teacher (or none)."""
    if teacher_info["speakers"] and teacher_info["speakers"] != list(setup.corpus.speakers):
        raise UserError(
            f"corpus speakers {setup.corpus.speakers} differ from the teacher's {teacher_info['speakers']}"
        )
    if setup.resume is None:
        if teacher is not None and setup.audio != base_audio:
            raise UserError("the student must use the teacher's audio/mel settings (audio.* cannot change)")
        return
    saved = setup.resume["config"].get("teacher") or {}
    if saved.get("config") != teacher_info["config"]:
        if saved.get("config") is None:
            raise UserError(
                "this run is spectral-only (no teacher): resume it without --teacher, or start a "
                "distillation run with --init pointing at its checkpoint"
            )
        if teacher_info["config"] is None:
            raise UserError(f"this run is distilled from {saved.get('path')}: pass it as --teacher")
        raise UserError(
            f"{setup.args.teacher} is not the teacher this student was distilled from (its config differs)"
        )


def train(args: TrainArgs) -> dict:
    """Entry point of ``parawave train student`` (see model.train.cli). Returns run_training's summary."""
    teacher, teacher_info = _load_teacher(args.teacher)
    # the student uses the teacher's features (the default features without a teacher)
    base_audio = (
        AudioConfig() if teacher_info["audio"] is None else AudioConfig.from_dict(teacher_info["audio"])
    )
    setup = prepare(args, SPEC, base_audio)
    _check_teacher(setup, teacher, teacher_info, base_audio)
    task = setup.build(
        lambda: StudentTask(
            setup.model_cfg, setup.train_cfg, setup.audio, setup.corpus, teacher, teacher_info
        )
    )
    fresh = setup.resume is None and setup.init is None
    if (
        fresh
        and teacher is not None
        and setup.train_cfg.init_cond_from_teacher
        and not task.cond_from_teacher
    ):
        log.warning("the teacher's conditioning network has another shape: the student's starts random")
    return setup.train(task)
