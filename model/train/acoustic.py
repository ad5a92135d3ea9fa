"""``parawave train acoustic``: phoneme ids -> log-mel with an alignment learned from the corpus.

Loss (see :func:`model.acoustic.acoustic_losses`): mel L1 + L2 before and after the postnet (on
per-bin normalised log-mels), duration MSE in the log domain against the durations of the hard
(MAS) alignment, the aligner's forward-sum loss, and -- after ``bin_start`` steps, ramped in over
``bin_ramp`` steps -- the binarisation loss that pulls the soft alignment onto the hard one.

Data: :class:`model.data.dataset.TTSDataset` (needs ``phonemes.jsonl``). The per-bin mel mean/std
are measured on up to ``stats_clips`` training clips at the start and stored in the model's
buffers (so in every checkpoint). Validation (EMA weights): the teacher-forced losses, the relative
error of the predicted total duration against the real clip, and -- when the corpus was rendered
with ``--durations`` -- the boundary error of the learned alignment against flite's phone end
times (:mod:`model.validation.alignment`). Samples: alignment plots and target / teacher-forced /
free-running mels of the first validation clip.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn

from model.acoustic import MODEL_KIND, PRESETS, AcousticConfig, AcousticModel, acoustic_losses
from model.data.config import AudioConfig
from model.train.config import TINY_PRESET, TrainArgs, TrainConfig
from model.train.loaders import infinite_batches, make_loader, pick_eval_split
from model.train.samples import plot_mels
from model.train.setup import ModelSpec, prepare
from model.train.task import CorpusTask

__all__ = ["TRAIN_PRESETS", "AcousticTask", "AcousticTrainConfig", "collate_acoustic", "train"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AcousticTrainConfig(TrainConfig):
    bin_start: int = 1000  # steps of forward-sum-only alignment before the binarisation loss
    bin_ramp: int = 1000  # steps to ramp the binarisation weight from 0 to bin_weight
    bin_weight: float = 1.0
    stats_clips: int = 200  # training clips measured for the mel normalisation
    val_alignment_clips: int = 64  # validation clips for the flite boundary check (0 = off)


TRAIN_PRESETS: dict[str, AcousticTrainConfig] = {
    "tiny": AcousticTrainConfig(
        **TINY_PRESET, lr=3e-3, bin_start=20, bin_ramp=20, stats_clips=16, val_alignment_clips=8
    ),
    "cpu": AcousticTrainConfig(
        steps=20_000,
        batch_size=16,
        lr=1e-3,
        warmup_steps=200,
        ema_decay=0.999,
        num_workers=1,
        log_every=25,
        val_every=500,
        val_batches=4,
        sample_every=1000,
        bin_start=600,
        bin_ramp=600,
        checkpoint_minutes=5.0,
    ),
    # unmeasured estimate: ~0.1-0.15 s/step on an H100 (MAS on the host CPU is ~0.1 s for 32 long
    # clips without numba), so ~12k steps in 20-30 minutes; ~10 epochs of the 3-voice corpus
    "gpu": AcousticTrainConfig(
        steps=12_000,
        batch_size=32,
        lr=1e-3,
        warmup_steps=1000,
        ema_decay=0.9995,
        precision="bf16",
        num_workers=8,
        log_every=100,
        val_every=2000,
        val_batches=8,
        sample_every=5000,
        bin_start=2000,
        bin_ramp=2000,
        checkpoint_minutes=5.0,
        val_alignment_clips=128,
    ),
}


def collate_acoustic(batch: list[dict]) -> dict:
    """collate_tts without the audio (the acoustic model never reads it)."""
    from model.data.dataset import collate_tts

    out = collate_tts(batch)
    del out["audio"], out["audio_lengths"]
    return out


def plot_alignment(soft: Tensor, hard: Tensor, phonemes: str, title: str = ""):
    """Soft attention (L, F) as an image with the hard (MAS) path on top."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    soft = soft.detach().float().cpu().numpy()  # (F, L)
    hard = hard.detach().float().cpu().numpy()  # (F, L)
    F, L = soft.shape
    fig, ax = plt.subplots(figsize=(max(6, F / 40), max(3, L / 12)))
    ax.imshow(soft.T, origin="lower", aspect="auto", interpolation="none", cmap="viridis")
    ax.plot(range(F), hard.argmax(1), color="red", linewidth=0.8)
    if L <= 120 and len(phonemes) == L:
        ax.set_yticks(range(L), [c if c != " " else "␣" for c in phonemes], fontsize=6)
    ax.set_xlabel("mel frame")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


class AcousticTask(CorpusTask):
    kind = MODEL_KIND

    def __init__(
        self,
        model_cfg: AcousticConfig,
        train_cfg: AcousticTrainConfig,
        audio: AudioConfig,
        corpus,
        start_step: int = 0,
    ):
        if model_cfg.n_mels != audio.n_mels:
            raise ValueError(f"model n_mels {model_cfg.n_mels} != audio n_mels {audio.n_mels}")
        super().__init__(model_cfg, train_cfg, audio, corpus)
        self.model = AcousticModel(model_cfg)  # seeded by the setup (model.train.setup.Setup.build)
        self.eval_split = pick_eval_split(corpus, "train clips")
        self.step = start_step  # for the binarisation schedule; counts training loss calls

    def data_dict(self) -> dict:
        return super().data_dict() | {"symbols": self.corpus.symbols}

    def measure_mel_stats(self) -> None:
        """Per-bin mean/std of the training log-mels -> the model's normalisation buffers."""
        import numpy as np

        from model.data.dataset import load_clip

        ids = self.corpus.ids("train")
        rng = np.random.default_rng(self.train_cfg.seed)
        pick = rng.choice(len(ids), size=min(len(ids), self.train_cfg.stats_clips), replace=False)
        mels = np.concatenate([load_clip(self.corpus, ids[i], self.audio)[0] for i in pick], axis=1)
        mean, std = mels.mean(1), mels.std(1)  # (n_mels,)
        self.model.set_mel_stats(torch.from_numpy(mean).float(), torch.from_numpy(std).float())
        log.info(
            "mel stats from %d clips: mean %.2f, std %.2f (averaged over bins)",
            len(pick),
            mean.mean(),
            std.mean(),
        )

    def bin_weight(self, step: int) -> float:
        cfg = self.train_cfg
        if step < cfg.bin_start:
            return 0.0
        return cfg.bin_weight * min(1.0, (step - cfg.bin_start + 1) / max(cfg.bin_ramp, 1))

    def train_batches(self, device: torch.device):
        from model.data.dataset import TTSDataset

        cfg = self.train_cfg
        dataset = TTSDataset(self.corpus, "train", self.audio, pitch=self.model_cfg.pitch)
        loader = make_loader(dataset, cfg.batch_size, collate_acoustic, cfg.num_workers, cfg.seed, device)
        return infinite_batches(loader)

    @staticmethod
    def _forward(model: nn.Module, batch: dict) -> dict[str, Tensor]:
        return model(
            batch["phonemes"],
            batch["phoneme_lengths"],
            batch["mel"],
            batch["mel_lengths"],
            batch["speaker"],
            f0=batch.get("f0"),  # (B, F) Hz, present when the model predicts pitch
        )

    def loss(self, model: nn.Module, batch: dict) -> tuple[Tensor, dict]:
        w = self.bin_weight(self.step)
        self.step += 1
        out = self._forward(model, batch)
        losses = acoustic_losses(
            out, batch["phoneme_lengths"], batch["mel_lengths"], w, self.model_cfg.f0_log_std
        )
        metrics = {k: v.detach() for k, v in losses.items() if k != "total"}
        metrics["bin_weight"] = w
        return losses["total"], metrics

    def _val_batches(self, batch_size: int, n_batches: int):
        from torch.utils.data import DataLoader

        from model.data.dataset import TTSDataset

        dataset = TTSDataset(self.corpus, self.eval_split, self.audio, pitch=self.model_cfg.pitch)
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_acoustic)
        for i, batch in enumerate(loader):
            if i >= n_batches:
                break
            yield batch

    def validate(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        from model.data.corpus import durations_dir
        from model.validation.alignment import alignment_batch_stats

        cfg = self.train_cfg
        sums: dict[str, float] = {}
        n = 0
        rel_errors: list[float] = []
        flite_dir = durations_dir(self.corpus.path)
        boundary = None
        n_batches = max(cfg.val_batches, -(-cfg.val_alignment_clips // cfg.batch_size) if flite_dir else 0)
        for i, batch in enumerate(self._val_batches(cfg.batch_size, n_batches)):
            batch = {k: (v.to(device) if isinstance(v, Tensor) else v) for k, v in batch.items()}
            out = self._forward(model, batch)
            if i < cfg.val_batches:
                losses = acoustic_losses(
                    out, batch["phoneme_lengths"], batch["mel_lengths"], 1.0, self.model_cfg.f0_log_std
                )
                for k, v in losses.items():
                    sums[k] = sums.get(k, 0.0) + float(v)
                n += 1
                _, dur = model.infer(batch["phonemes"], batch["phoneme_lengths"], batch["speaker"], 1.0)
                pred = dur.sum(1).float()
                true = batch["mel_lengths"].float()
                rel_errors += ((pred - true) / true).tolist()
            if flite_dir is not None and i * cfg.batch_size < cfg.val_alignment_clips:
                stats = alignment_batch_stats(self.corpus, batch["ids"], out["durations"], self.audio)
                if boundary is None:
                    boundary = stats
                else:
                    boundary.extend(stats)
        result = {k: v / max(n, 1) for k, v in sums.items()}
        # best.pt: the mel and duration terms (the alignment terms change meaning with bin_weight)
        result["loss"] = (
            result.get("mel", 0.0)
            + result.get("duration", 0.0)
            + result.get("pitch", 0.0)
            + result.get("voicing", 0.0)
        )
        result.pop("total", None)
        if rel_errors:
            import numpy as np

            rel = np.abs(np.asarray(rel_errors))
            result["total_duration_rel_err"] = float(rel.mean())
            result["within_15pct"] = float((rel <= 0.15).mean())
        if boundary is not None and boundary.errors_ms:
            summary = boundary.summary()
            result["boundary_ms"] = summary["mean_abs_ms"]
            result["boundary_median_ms"] = summary["median_ms"]
            result["boundary_matched"] = summary["matched_fraction"]
        return result

    def log_samples(self, model: nn.Module, writer, step: int, device: torch.device) -> None:
        batch = next(iter(self._val_batches(1, 1)))
        batch = {k: (v.to(device) if isinstance(v, Tensor) else v) for k, v in batch.items()}
        clip_id = batch["ids"][0]
        out = self._forward(model, batch)
        mel_tf = model.denormalize(out["mel_post"])[0]  # (n_mels, F)
        mel_free, _ = model.infer(batch["phonemes"], batch["phoneme_lengths"], batch["speaker"], 1.0)
        entry = (self.corpus.manifest or {}).get(clip_id, {})
        fig = plot_alignment(
            out["attn_soft"][0], out["attn_hard"][0], entry.get("phonemes", ""), f"{clip_id} step {step}"
        )
        writer.add_figure("sample/alignment", fig, step)
        mels = {
            f"target {clip_id}": batch["mel"][0],
            "teacher-forced (MAS durations)": mel_tf,
            "free-running": mel_free[0],
        }
        writer.add_figure("sample/mel", plot_mels(mels, title=f"step {step}"), step)


def _corpus_fields(audio: AudioConfig, corpus) -> dict:
    """The acoustic model's fields that follow the corpus (and the audio's log floor)."""
    mel_floor = float(torch.log(torch.tensor(audio.log_floor)))
    return {"mel_floor": mel_floor, "n_symbols": corpus.n_symbols, "n_speakers": len(corpus.speakers)}


def _init_config(saved: dict, requested: AcousticConfig) -> AcousticConfig:
    """--init: the checkpoint's architecture, with pitch as the run asks (a model without pitch gains
    a pitch predictor)."""
    return replace(AcousticConfig.from_dict(saved), pitch=requested.pitch)


SPEC = ModelSpec(
    MODEL_KIND,
    AcousticConfig,
    AcousticTrainConfig,
    PRESETS,
    TRAIN_PRESETS,
    _init_config,
    audio_fields=("n_mels",),
    corpus_fields=_corpus_fields,
    # a checkpoint without pitch leaves the pitch predictor at its initialisation (embedding at zero)
    new_weight=lambda key: key.startswith(("pitch_convs.", "pitch_out.", "pitch_embed.")),
    needs_symbols=True,
)


def train(args: TrainArgs) -> dict:
    """Entry point of ``parawave train acoustic`` (see model.train.cli). Returns run_training's summary."""
    setup = prepare(args, SPEC)
    task = setup.build(
        lambda: AcousticTask(setup.model_cfg, setup.train_cfg, setup.audio, setup.corpus, setup.start_step)
    )
    if setup.resume is None and setup.init is None:
        task.measure_mel_stats()  # an --init checkpoint brings its own, a resumed run has them
    return setup.train(task)
