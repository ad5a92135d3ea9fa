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

Adversarial training (issue 37; GAN-based density distillation, Yamamoto et al. 2019), on when
``adv_weight > 0`` (``adv_weight = 0``: no discriminator is built, the trainer above unchanged):
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
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import Tensor, nn

from model.checkpoint import check_kind, cpu_state
from model.data.config import AudioConfig
from model.discriminators import DiscConfig, MultiDiscriminator
from model.losses import (
    MultiResolutionSTFTLoss,
    distillation_kl,
    feature_matching_loss,
    lsgan_discriminator_loss,
    lsgan_generator_loss,
)
from model.student import MODEL_KIND, PRESETS, StudentConfig, StudentIAF
from model.teacher import TeacherWaveNet, teacher_from_checkpoint
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
        steps=200,
        batch_size=4,
        segment_frames=4,
        val_segment_frames=4,
        stft_ffts=(256, 128, 64),
        lr=3e-3,
        warmup_steps=5,
        ema_decay=0.99,
        num_workers=0,
        threads=1,
        log_every=5,
        val_every=0,
        val_batches=2,
        sample_every=-1,
        sample_seconds=0.1,
    ),
    "cpu": StudentTrainConfig(
        steps=50_000,
        batch_size=4,
        segment_frames=20,
        lr=1e-3,
        warmup_steps=500,
        ema_decay=0.999,
        num_workers=1,
        compile=True,  # issue 16: student and frozen teacher compiled (bench/results)
        log_every=50,
        val_every=1000,
        val_batches=8,
        sample_every=5000,
        checkpoint_minutes=10.0,
    ),
    "gpu": StudentTrainConfig(
        steps=100_000,
        batch_size=16,
        segment_frames=40,
        val_segment_frames=80,
        stft_ffts=(2048, 1024, 512, 256),
        lr=1e-3,
        warmup_steps=1000,
        ema_decay=0.9999,
        precision="bf16",
        num_workers=8,
        log_every=100,
        val_every=2000,
        val_batches=16,
        sample_every=10_000,
        checkpoint_minutes=5.0,
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


class StudentTask(TrainTask):
    kind = MODEL_KIND

    def __init__(
        self,
        model_cfg: StudentConfig,
        train_cfg: StudentTrainConfig,
        audio: AudioConfig,
        corpus,
        teacher: TeacherWaveNet | None,
        teacher_info: dict,
    ):
        if model_cfg.hop_length != audio.hop_length:  # the upsampling factor must be the feature hop
            raise ValueError(f"model hop {model_cfg.hop_length} != audio hop {audio.hop_length}")
        if model_cfg.sample_rate != audio.sample_rate or model_cfg.n_mels != audio.n_mels:
            raise ValueError("model sample_rate/n_mels do not match the audio config")
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
        self.model_cfg = model_cfg
        self.train_cfg = train_cfg
        self.audio = audio
        self.corpus = corpus
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
        self.disc: MultiDiscriminator | None = None
        self._train_disc: nn.Module | None = None
        if train_cfg.adv_weight > 0:
            from model.train.optim import make_scheduler

            with torch.random.fork_rng():  # the same initial discriminators in every run of a seed
                torch.manual_seed(train_cfg.seed)
                self.disc = MultiDiscriminator(train_cfg.disc_config())
            self.disc_optimizer = torch.optim.Adam(
                self.disc.parameters(), lr=train_cfg.disc_lr, betas=tuple(train_cfg.disc_betas)
            )
            self.disc_scheduler = make_scheduler(
                self.disc_optimizer, replace(train_cfg, lr=train_cfg.disc_lr)
            )
        self.eval_split = pick_eval_split(corpus, "fixed train windows")
        self.cond_from_teacher = False
        if train_cfg.init_cond_from_teacher and teacher is not None:
            self.cond_from_teacher = init_conditioning_from_teacher(self.model, self.teacher)
            if self.cond_from_teacher:
                log.info("student conditioning network initialised from the teacher's")
            else:
                log.info("student conditioning network differs in shape from the teacher's: random init")

    def config_dict(self) -> dict:
        return {
            "model": self.model_cfg.to_dict(),
            "train": self.train_cfg.to_dict(),
            "audio": self.audio.to_dict(),
            "data": {"corpus": str(self.corpus.path), "speakers": list(self.corpus.speakers)},
            "teacher": dict(self.teacher_info),
        }

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
        if self.disc is not None:
            self.disc.to(device)
            if self._train_disc is None:
                from model.train.precision import compile_module

                # static shapes: the (2B, T) update and the (B, T) student pass are two graphs
                enabled = self.train_cfg.compile and self.train_cfg.disc_compile
                self._train_disc = compile_module(self.disc, device, enabled, dynamic=False)
        self.stft.to(device)

    def train_batches(self, device: torch.device):
        from model.data.dataset import VocoderDataset, collate_vocoder

        self._on(device)
        cfg = self.train_cfg
        dataset = VocoderDataset(self.corpus, "train", self.audio, cfg.segment_frames, excitation=self.excite)
        loader = make_loader(dataset, cfg.batch_size, collate_vocoder, cfg.num_workers, cfg.seed, device)
        return infinite_batches(loader)

    def aux_state_dict(self) -> dict | None:
        if self.disc is None:
            return None
        return {
            "disc": cpu_state(self.disc.state_dict()),
            "disc_config": self.train_cfg.disc_config().to_dict(),
            "optimizer": self.disc_optimizer.state_dict(),
            "scheduler": self.disc_scheduler.state_dict(),
        }

    def load_aux_state_dict(self, state: dict | None) -> None:
        if self.disc is None:
            if state is not None and "disc" in state:
                log.info("resumed without adversarial training: the saved discriminators are dropped")
            return
        if state is None or "disc" not in state:
            log.info("the resumed run had no discriminators: they start fresh")
            return
        if DiscConfig.from_dict(state["disc_config"]) != self.train_cfg.disc_config():
            raise UserError("cannot change the discriminators (disc_*) when resuming")
        self.disc.load_state_dict(state["disc"])
        self.disc_optimizer.load_state_dict(state["optimizer"])
        self.disc_scheduler.load_state_dict(state["scheduler"])

    def _disc_update(self, fake: Tensor, real: Tensor) -> tuple[dict[str, Tensor], list[list[Tensor]]]:
        """One discriminator step on (real, detached fake), (B, T) each. Returns its loss terms and the
        real audio's features (detached; the feature-matching targets)."""
        disc = self._train_disc if self._train_disc is not None else self.disc
        self.disc.requires_grad_(True)
        b = real.shape[0]
        scores, feats = disc(torch.cat([real, fake.detach()]))  # [(2B, N)], [[(2B, C, ...)]]
        d_real, d_fake = lsgan_discriminator_loss([s[:b] for s in scores], [s[b:] for s in scores])
        d_loss = d_real + d_fake
        self.disc_optimizer.zero_grad(set_to_none=True)
        if torch.isfinite(d_loss):
            with torch.autocast(device_type=real.device.type, enabled=False):
                d_loss.backward()
            self.disc_optimizer.step()
            self.disc_scheduler.step()
        else:
            log.warning("step %d: non-finite discriminator loss, its update skipped", self.step)
        real_feats = [[f[:b].detach() for f in fs] for fs in feats]
        terms = {"d_real": d_real.detach(), "d_fake": d_fake.detach(), "d_loss": d_loss.detach()}
        return terms, real_feats

    def _adversarial(self, x: Tensor, audio: Tensor) -> tuple[Tensor | None, dict[str, Tensor]]:
        """The adversarial part of a training step: the discriminator update (from ``disc_start``) and,
        once warmed up, the student's weighted adversarial + feature-matching loss (else None)."""
        cfg = self.train_cfg
        if self.disc is None or self.step < cfg.disc_start:
            return None, {}
        terms, real_feats = self._disc_update(x, audio)
        terms["disc_lr"] = torch.tensor(self.disc_scheduler.get_last_lr()[0])
        scale = cfg.adv_scale(self.step)
        terms["adv_scale"] = torch.tensor(scale)
        if scale == 0.0:
            return None, terms
        disc = self._train_disc if self._train_disc is not None else self.disc
        self.disc.requires_grad_(False)  # the student's pass: gradients into x only
        scores, feats = disc(x)
        adv = lsgan_generator_loss(scores)
        fm = feature_matching_loss(real_feats, feats)
        terms |= {"adv": adv.detach(), "fm": fm.detach()}
        return scale * (cfg.adv_weight * adv + cfg.fm_weight * fm), terms

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
        if adversarial:
            adv_loss, adv_terms = self._adversarial(x, audio)
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
            audio_tag="sample/student",
            label="student",
        )


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


def _init_checkpoint(path: Path) -> dict:
    return check_kind(load_checkpoint(path), MODEL_KIND, f"--init {path}")


def _init_model_config(path: Path, excitation_channels: int) -> StudentConfig:
    """The architecture of the --init checkpoint (a fresh run takes it whole; --set model.* is ignored),
    with ``excitation_channels`` (the run's) when the checkpoint predates excitation: a mel-only student
    gains zero-initialised excitation convs and starts exactly where it was."""
    saved = dict(_init_checkpoint(path)["config"]["model"])
    saved.setdefault("excitation_channels", excitation_channels)
    return StudentConfig.from_dict(saved)


def _load_init_weights(model: StudentIAF, path: Path) -> None:
    ckpt = _init_checkpoint(path)
    state = ckpt.get("ema") or ckpt["model"]  # the averaged weights are the ones worth continuing
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if ".excitation_conv." not in k]
    if missing or result.unexpected_keys:
        raise UserError(
            f"--init {path} does not fit this student: missing {missing[:3]}, unexpected {result.unexpected_keys[:3]}"
        )
    if result.missing_keys:
        log.info(
            "--init: %d excitation tensors start at zero (the checkpoint is mel-only)",
            len(result.missing_keys),
        )


def train(args: TrainArgs) -> dict:
    """Entry point of ``parawave train student`` (see model.train.cli). Returns run_training's summary."""
    from model.data.corpus import Corpus, CorpusError

    run, ckpt = prepare_run(args)
    try:
        corpus = Corpus(args.data)
    except CorpusError as exc:
        raise UserError(str(exc)) from None
    teacher, teacher_info = _load_teacher(args.teacher)
    if teacher_info["speakers"] and teacher_info["speakers"] != list(corpus.speakers):
        raise UserError(
            f"corpus speakers {corpus.speakers} differ from the teacher's {teacher_info['speakers']}"
        )
    classes = {"model": StudentConfig, "train": StudentTrainConfig, "audio": AudioConfig}
    reject_model_audio_sets(args.sets)
    init = args.extra.get("init")
    if ckpt is not None:
        if init is not None:
            raise UserError("--init starts a fresh run: it cannot be combined with --resume of a saved run")
        sections = resumed_sections(ckpt, run, args, classes, MODEL_KIND, "a student", corpus.speakers)
        saved = ckpt["config"].get("teacher") or {}
        if saved.get("config") != teacher_info["config"]:
            if saved.get("config") is None:
                raise UserError(
                    "this run is spectral-only (no teacher): resume it without --teacher, or start a "
                    "distillation run with --init pointing at its checkpoint"
                )
            if teacher_info["config"] is None:
                raise UserError(f"this run is distilled from {saved.get('path')}: pass it as --teacher")
            raise UserError(
                f"{args.teacher} is not the teacher this student was distilled from (its config differs)"
            )
    else:
        # the student uses the teacher's features (the default features without a teacher)
        base_audio = (
            AudioConfig() if teacher_info["audio"] is None else AudioConfig.from_dict(teacher_info["audio"])
        )
        sections = preset_sections(args, PRESETS, TRAIN_PRESETS, base_audio)
        audio = sections["audio"]
        if teacher is not None and audio != base_audio:
            raise UserError("the student must use the teacher's audio/mel settings (audio.* cannot change)")
        if init is not None:
            sections["model"] = _init_model_config(init, sections["model"].excitation_channels)
        sections["model"] = replace(
            sections["model"],
            sample_rate=audio.sample_rate,
            hop_length=audio.hop_length,
            n_mels=audio.n_mels,
            n_speakers=len(corpus.speakers),
        )
    device = resolve_device(args.device)
    task = StudentTask(sections["model"], sections["train"], sections["audio"], corpus, teacher, teacher_info)
    if ckpt is None and init is not None:
        _load_init_weights(task.model, init)
        log.info("student weights initialised from %s", init)
    elif (
        ckpt is None
        and teacher is not None
        and sections["train"].init_cond_from_teacher
        and not task.cond_from_teacher
    ):
        log.warning("the teacher's conditioning network has another shape: the student's starts random")
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
