"""Acoustic model: phoneme ids -> 80-bin log-mel frames, with an alignment learned from the data.

    phonemes ─embedding─▶ convs ─▶ BiLSTM encoder ─(+speaker)─┬─▶ duration predictor (log domain)
                 │                                            │
                 └─▶ aligner ◀─ mel (training only)           ▼
                        │ MAS (hard alignment) ─durations─▶ length regulator ─▶ frames
                                                              ─┬─▶ pitch predictor (log-F0, voicing)
                                                               ▼        │ (target F0 in training)
                                       decoder (convs + BiLSTM) ◀─ + pitch embedding ─▶ mel ─▶ postnet

Pitch (FastPitch's idea at frame rate): a conv predictor on the length-regulated encoder frames
gives each frame's normalised log-F0 and a voicing logit; the decoder gets a conv embedding of
[log-F0 * voiced, voiced] -- the tracked F0 in training, the predicted one at inference, shifted
by ``pitch`` semitones when asked (so the mel follows the shifted pitch). The embedding starts at
zero (a model without pitch is where training starts). ``generate`` also returns the F0 contour
(Hz, 0 = unvoiced) the vocoders' excitation is built from.

Training: durations come from the aligner's hard alignment (see ``model.align``); inference: from
the duration predictor, scaled by ``1 / speed``. The same ``length_regulate`` (cumsum + comparison
+ matmul, no data-dependent Python control flow) serves both. The BiLSTMs handle padding without
``pack_padded_sequence`` (the backward direction runs on each sequence reversed within its
length), so batched inference is exact and the graph stays traceable for ONNX export.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace

import torch
from torch import nn

from core.limits import check_pitch, check_speed
from model.acoustic_layers import ConvBlock, MaskedBiLSTM, durations_from_log, length_regulate, sequence_mask
from model.align import Aligner, beta_binomial_log_prior, binarization_loss, forward_sum_loss, hard_alignment
from model.wavenet import speaker_embedding

MODEL_KIND = "acoustic"


@dataclass(frozen=True)
class AcousticConfig:
    n_symbols: int = 128  # phoneme table size (set from the corpus' symbols.json); id 0 = pad
    n_speakers: int = 1
    n_mels: int = 80
    mel_floor: float = math.log(1e-5)  # log-mel of silence (AudioConfig.log_floor); pads the output
    d_model: int = 256  # encoder width: embedding, convs, BiLSTM output (2 x d_model/2)
    enc_convs: int = 3
    enc_kernel: int = 5
    speaker_dim: int = 64
    dur_channels: int = 256
    dur_kernel: int = 3
    dec_channels: int = 256  # decoder convs; BiLSTM output is dec_channels (2 x dec_channels/2)
    dec_convs: int = 3
    dec_kernel: int = 5
    dec_dilations: tuple[int, ...] = (1,)  # cycled over the decoder convs
    dec_lstm: bool = True  # a BiLSTM after the decoder convs (slow on CPU: sequential over frames)
    postnet_channels: int = 256
    postnet_layers: int = 5  # 0 disables the postnet
    postnet_kernel: int = 5
    align_channels: int = 80
    align_temperature: float = 2.0  # on normalised mels; 0.5-2 measured to converge in ~200 steps
    prior_scaling: float = 1.0  # beta-binomial prior sharpness (training only)
    dropout: float = 0.1
    max_phoneme_frames: int = 200  # cap on a predicted (unscaled) duration, 2.5 s at 12.5 ms
    # pitch: a frame-level log-F0 + voicing predictor, and the decoder's pitch embedding
    pitch: bool = True
    pitch_channels: int = 128
    pitch_kernel: int = 3
    f0_log_mean: float = 4.87  # log(130 Hz): log-F0 is normalised as (log f0 - mean) / std
    f0_log_std: float = 0.35

    def __post_init__(self) -> None:
        if self.d_model % 2 or self.dec_channels % 2:
            raise ValueError("d_model and dec_channels must be even (BiLSTM halves)")
        if self.n_symbols < 2 or self.n_speakers < 1:
            raise ValueError("need n_symbols >= 2 and n_speakers >= 1")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> AcousticConfig:
        names = {f.name for f in fields(cls)}
        d = {"pitch": False, **d}  # saved before pitch existed: a model without it
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in names})

    @classmethod
    def preset(cls, name: str, **overrides) -> AcousticConfig:
        if name not in PRESETS:
            raise ValueError(f"unknown acoustic preset {name!r}; choose from {', '.join(PRESETS)}")
        return replace(PRESETS[name], **overrides)


PRESETS: dict[str, AcousticConfig] = {
    # unit tests: a few thousand parameters, trains in seconds
    "tiny": AcousticConfig(
        d_model=32,
        enc_convs=1,
        speaker_dim=8,
        dur_channels=32,
        dec_channels=32,
        dec_convs=1,
        postnet_channels=32,
        postnet_layers=2,
        align_channels=32,
        pitch_channels=16,
        dropout=0.0,
    ),
    # a few hundred clips on a shared CPU in minutes
    "cpu": AcousticConfig(
        d_model=128,
        enc_convs=3,
        speaker_dim=32,
        dur_channels=128,
        dec_channels=128,
        dec_convs=3,
        dec_dilations=(1, 2, 4),
        dec_lstm=False,
        postnet_channels=128,
        postnet_layers=3,
        align_channels=64,
        dropout=0.1,
    ),
    # the 3-speaker rendered LJSpeech corpus (~37k clips) on one H100 in ~20-30 minutes
    "gpu": AcousticConfig(
        d_model=384,
        enc_convs=3,
        speaker_dim=64,
        dur_channels=256,
        dec_channels=512,
        dec_convs=3,
        postnet_channels=256,
        postnet_layers=5,
        align_channels=80,
        dropout=0.1,
    ),
}


# ---------------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------------


class AcousticModel(nn.Module):
    def __init__(self, cfg: AcousticConfig) -> None:
        super().__init__()
        self.cfg = cfg
        D = cfg.d_model
        self.embed = nn.Embedding(cfg.n_symbols, D, padding_idx=0)
        self.speaker = nn.Embedding(cfg.n_speakers, cfg.speaker_dim)
        self.enc_convs = nn.ModuleList(
            ConvBlock(D, D, cfg.enc_kernel, cfg.dropout) for _ in range(cfg.enc_convs)
        )
        self.enc_lstm = MaskedBiLSTM(D, D // 2)
        self.enc_speaker = nn.Linear(cfg.speaker_dim, D)
        # duration predictor: log(1 + frames)
        self.dur_convs = nn.ModuleList(
            [
                ConvBlock(D, cfg.dur_channels, cfg.dur_kernel, cfg.dropout),
                ConvBlock(cfg.dur_channels, cfg.dur_channels, cfg.dur_kernel, cfg.dropout),
            ]
        )
        self.dur_out = nn.Linear(cfg.dur_channels, 1)
        # aligner (training only)
        self.aligner = Aligner(D, cfg.n_mels, cfg.align_channels, cfg.align_temperature)
        # decoder
        C = cfg.dec_channels
        self.dec_in = nn.Linear(D + 2, C)
        self.dec_speaker = nn.Linear(cfg.speaker_dim, C)
        if cfg.pitch:  # predictor on the decoder's input frames; embedding zero-initialised
            P, k = cfg.pitch_channels, cfg.pitch_kernel
            self.pitch_convs = nn.ModuleList(
                [ConvBlock(C, P, k, cfg.dropout), ConvBlock(P, P, k, cfg.dropout)]
            )
            self.pitch_out = nn.Linear(P, 2)  # normalised log-F0, voicing logit
            self.pitch_embed = nn.Conv1d(2, C, k, padding=k // 2)
            nn.init.zeros_(self.pitch_embed.weight)
            nn.init.zeros_(self.pitch_embed.bias)
        dil = cfg.dec_dilations
        self.dec_convs = nn.ModuleList(
            ConvBlock(C, C, cfg.dec_kernel, cfg.dropout, dil[i % len(dil)]) for i in range(cfg.dec_convs)
        )
        self.dec_lstm = MaskedBiLSTM(C, C // 2) if cfg.dec_lstm else None
        self.dec_out = nn.Linear(C, cfg.n_mels)
        post: list[nn.Module] = []
        for i in range(cfg.postnet_layers):
            c_in = cfg.n_mels if i == 0 else cfg.postnet_channels
            c_out = cfg.n_mels if i == cfg.postnet_layers - 1 else cfg.postnet_channels
            post.append(nn.Conv1d(c_in, c_out, cfg.postnet_kernel, padding=cfg.postnet_kernel // 2))
        self.postnet = nn.ModuleList(post)
        # per-bin log-mel statistics: the model works on normalised mels (set from the corpus)
        self.register_buffer("mel_mean", torch.zeros(cfg.n_mels))
        self.register_buffer("mel_std", torch.ones(cfg.n_mels))

    # -- helpers ------------------------------------------------------------------------------

    def set_mel_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.mel_mean.copy_(mean.reshape(-1))
        self.mel_std.copy_(std.reshape(-1).clamp(min=1e-3))

    def normalize(self, mel: torch.Tensor) -> torch.Tensor:  # (B, n_mels, F)
        return (mel - self.mel_mean[None, :, None]) / self.mel_std[None, :, None]

    def denormalize(self, mel: torch.Tensor) -> torch.Tensor:  # (B, n_mels, F)
        return mel * self.mel_std[None, :, None] + self.mel_mean[None, :, None]

    def encode(
        self, phonemes: torch.Tensor, text_lens: torch.Tensor, speaker: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """phonemes (B, L) -> (embedding (B, D, L), encoding (B, L, D), log durations (B, L), mask (B, L))."""
        mask = sequence_mask(text_lens, phonemes.shape[1])  # (B, L)
        m = mask[:, None, :].float()  # (B, 1, L)
        emb = self.embed(phonemes).transpose(1, 2) * m  # (B, D, L)
        x = emb
        for conv in self.enc_convs:
            x = conv(x, m)  # (B, D, L)
        h = self.enc_lstm(x.transpose(1, 2), text_lens)  # (B, L, D)
        h = (h + self.enc_speaker(speaker_embedding(self.speaker, speaker))[:, None, :]) * mask[
            :, :, None
        ]  # (B, L, D)
        y = h.transpose(1, 2)  # (B, D, L)
        for conv in self.dur_convs:
            y = conv(y, m)  # (B, Cd, L)
        log_dur = self.dur_out(y.transpose(1, 2)).squeeze(2) * mask  # (B, L)
        return emb, h, log_dur, mask

    def normalize_f0(self, f0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """f0 (B, F) Hz, 0 = unvoiced -> (normalised log-F0 (B, F), 0 where unvoiced; voiced (B, F) 0/1)."""
        voiced = (f0 > 0).to(f0.dtype)
        lf0 = (torch.log(f0.clamp(min=1.0)) - self.cfg.f0_log_mean) / self.cfg.f0_log_std
        return lf0 * voiced, voiced

    def denormalize_f0(self, lf0: torch.Tensor, voiced: torch.Tensor) -> torch.Tensor:
        """(normalised log-F0, voiced 0/1) (B, F) -> f0 (B, F) Hz, 0 where unvoiced."""
        return torch.exp(lf0 * self.cfg.f0_log_std + self.cfg.f0_log_mean) * voiced

    def decode(
        self,
        h: torch.Tensor,
        durations: torch.Tensor,
        speaker: torch.Tensor,
        n_frames=None,
        f0: torch.Tensor | None = None,
        pitch_shift: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """Expand and decode -> (mel before postnet, mel after postnet) normalised (B, n_mels, F),
        lengths (B,), pitch outputs {"lf0_pred", "voiced_logit", "lf0", "voiced"} (B, F) each (empty
        without pitch). ``f0`` (B, F) Hz: the target contour (training); None: the predicted one,
        shifted by ``pitch_shift`` (B,) semitones."""
        frames, pos, mel_lens = length_regulate(h, durations, n_frames)  # (B, F, D), (B, F, 2), (B,)
        fmask = sequence_mask(mel_lens, frames.shape[1])  # (B, F)
        m = fmask[:, None, :].to(h.dtype)  # (B, 1, F)
        x = (
            self.dec_in(torch.cat([frames, pos], dim=2))
            + self.dec_speaker(speaker_embedding(self.speaker, speaker))[:, None, :]
        )
        x = x.transpose(1, 2) * m  # (B, C, F)
        pitch: dict[str, torch.Tensor] = {}
        if self.cfg.pitch:
            y = x
            for conv in self.pitch_convs:
                y = conv(y, m)  # (B, P, F)
            lf0_pred, voiced_logit = self.pitch_out(y.transpose(1, 2)).unbind(2)  # (B, F) each
            if f0 is not None:
                lf0, voiced = self.normalize_f0(f0)  # (B, F) each
            else:
                voiced = (voiced_logit > 0).to(x.dtype) * fmask.to(x.dtype)  # (B, F)
                lf0 = lf0_pred
                if pitch_shift is not None:
                    shift = pitch_shift.to(x.dtype) * (math.log(2.0) / 12.0 / self.cfg.f0_log_std)
                    lf0 = lf0 + shift.reshape(-1, 1)
                lf0 = lf0 * voiced
            pitch = {"lf0_pred": lf0_pred, "voiced_logit": voiced_logit, "lf0": lf0, "voiced": voiced}
            x = x + self.pitch_embed(torch.stack([lf0, voiced], dim=1)) * m  # (B, C, F)
        for conv in self.dec_convs:
            x = x + conv(x, m)  # residual (B, C, F)
        x = x.transpose(1, 2)  # (B, F, C)
        if self.dec_lstm is not None:
            x = self.dec_lstm(x, mel_lens)  # (B, F, C)
        mel = self.dec_out(x).transpose(1, 2) * m  # (B, n_mels, F)
        post = mel
        for i, conv in enumerate(self.postnet):
            post = conv(post * m)
            if i < len(self.postnet) - 1:
                post = torch.dropout(torch.tanh(post), self.cfg.dropout, self.training)
        mel_post = (mel + post) * m if len(self.postnet) else mel
        return mel, mel_post, mel_lens, pitch

    # -- training -----------------------------------------------------------------------------

    def forward(
        self,
        phonemes: torch.Tensor,  # (B, L) long, 0 = pad
        text_lens: torch.Tensor,  # (B,)
        mel: torch.Tensor,  # (B, n_mels, F) log-mel (not normalised)
        mel_lens: torch.Tensor,  # (B,)
        speaker: torch.Tensor,  # (B,)
        use_prior: bool = True,
        f0: torch.Tensor | None = None,  # (B, F) Hz, 0 = unvoiced; needed when cfg.pitch
    ) -> dict[str, torch.Tensor]:
        """Teacher-forced pass: align, then decode with the hard (MAS) durations (and the target F0)."""
        if self.cfg.pitch and f0 is None:
            raise ValueError("a pitch-aware acoustic model trains on the target F0: pass f0 (B, F)")
        L = phonemes.shape[1]
        n_frames = mel.shape[2]
        mel_n = self.normalize(mel)  # (B, n_mels, F)
        emb, h, log_dur, mask = self.encode(phonemes, text_lens, speaker)
        prior = None
        if use_prior:
            prior = beta_binomial_log_prior(text_lens, mel_lens, n_frames, L, self.cfg.prior_scaling)
        with torch.autocast(device_type=mel.device.type, enabled=False):  # distances need fp32
            logits, soft, log_soft = self.aligner(emb.float(), mel_n.float(), mask, prior)  # (B, F, L) each
        fmask = sequence_mask(mel_lens, n_frames)  # (B, F)
        soft = soft * fmask[:, :, None]
        hard = hard_alignment(log_soft, text_lens, mel_lens)  # (B, F, L)
        durations = hard.sum(1).long()  # (B, L), sums to mel_lens
        mel_pre, mel_post, _, pitch = self.decode(h, durations, speaker, n_frames, f0=f0)
        return {
            **pitch,  # "lf0_pred", "voiced_logit", "lf0" (target), "voiced" (target), (B, F) each
            "mel_pre": mel_pre,  # (B, n_mels, F) normalised
            "mel_post": mel_post,  # (B, n_mels, F) normalised
            "mel_target": mel_n,  # (B, n_mels, F) normalised
            "log_dur": log_dur,  # (B, L) predicted log(1 + frames)
            "durations": durations,  # (B, L) from the hard alignment
            "attn_logits": logits,  # (B, F, L)
            "attn_soft": soft,  # (B, F, L)
            "attn_hard": hard,  # (B, F, L)
            "text_mask": mask,  # (B, L)
            "mel_mask": fmask,  # (B, F)
        }

    # -- inference ----------------------------------------------------------------------------

    def generate(
        self,
        phonemes: torch.Tensor,
        text_lens: torch.Tensor,
        speaker: torch.Tensor,
        speed: torch.Tensor,
        pitch: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Traceable inference core (no validation): -> mel (B, n_mels, F), durations (B, L), frames (B,),
        f0 (B, F) Hz (0 = unvoiced; all 0 without pitch). ``pitch`` (B,) semitones shifts the F0.

        Frames past an utterance's length hold ``mel_floor`` (silence) and F0 0.
        """
        _, h, log_dur, mask = self.encode(phonemes, text_lens, speaker)
        log_dur = log_dur.clamp(max=math.log1p(self.cfg.max_phoneme_frames))
        durations = durations_from_log(log_dur, mask, speed)  # (B, L)
        _, mel_post, mel_lens, p = self.decode(h, durations, speaker, pitch_shift=pitch)
        mel = self.denormalize(mel_post)  # (B, n_mels, F)
        fmask = sequence_mask(mel_lens, mel.shape[2])  # (B, F)
        mel = torch.where(fmask[:, None, :], mel, torch.full_like(mel, self.cfg.mel_floor))
        # (B, F): 0 where unvoiced and past the end; all 0 for a model without pitch
        f0 = self.denormalize_f0(p["lf0"], p["voiced"]) if p else torch.zeros_like(mel[:, 0])
        return mel, durations, mel_lens, f0

    @torch.no_grad()
    def infer(
        self,
        phoneme_ids: torch.Tensor,  # (B, L) long, 0 = pad
        lengths: torch.Tensor,  # (B,)
        speaker: torch.Tensor,  # (B,)
        speed: float = 1.0,
        pitch: float = 0.0,
        return_f0: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor] | tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Text -> mel. Returns (mel (B, n_mels, F) log-mel, durations (B, L) frames per phoneme) and,
        with ``return_f0``, f0 (B, F) Hz (0 = unvoiced). ``pitch``: semitones, -12..12.

        Utterance b has ``durations[b].sum()`` frames; the rest of its row is silence. Always runs
        in eval mode (deterministic), whatever mode the module is in.
        """
        speed = check_speed(speed)
        pitch = check_pitch(pitch)
        phoneme_ids = torch.as_tensor(phoneme_ids, dtype=torch.long)
        lengths = torch.as_tensor(lengths, dtype=torch.long).reshape(-1)
        speaker = torch.as_tensor(speaker, dtype=torch.long).reshape(-1)
        if phoneme_ids.ndim != 2 or not phoneme_ids.shape[0] == lengths.shape[0] == speaker.shape[0]:
            raise ValueError("phoneme_ids must be (B, L) with one length and one speaker per row")
        if (lengths < 1).any() or (lengths > phoneme_ids.shape[1]).any():
            raise ValueError("every length must be in [1, L]")
        if (phoneme_ids < 0).any() or (phoneme_ids >= self.cfg.n_symbols).any():
            raise ValueError(f"phoneme ids must be in [0, {self.cfg.n_symbols - 1}]")
        if (speaker < 0).any() or (speaker >= self.cfg.n_speakers).any():
            raise ValueError(f"speaker ids must be in [0, {self.cfg.n_speakers - 1}]")
        dev = self.mel_mean.device
        was_training = self.training
        self.eval()
        try:
            B = phoneme_ids.shape[0]
            mel, durations, _, f0 = self.generate(
                phoneme_ids.to(dev),
                lengths.to(dev),
                speaker.to(dev),
                torch.tensor(speed, device=dev),
                torch.full((B,), pitch, device=dev),
            )
        finally:
            self.train(was_training)
        return (mel, durations, f0) if return_f0 else (mel, durations)


# ---------------------------------------------------------------------------------------------
# Losses
# ---------------------------------------------------------------------------------------------


def acoustic_losses(
    out: dict[str, torch.Tensor], text_lens, mel_lens, bin_weight: float, f0_log_std: float = 0.35
) -> dict:
    """All training terms (means over valid cells). ``total`` is what the optimiser minimises.
    ``f0_log_std``: the model's log-F0 normalisation (AcousticConfig.f0_log_std), for the cents metric."""
    fmask = out["mel_mask"][:, None, :].float()  # (B, 1, F)
    n_cells = fmask.sum() * out["mel_target"].shape[1]
    target = out["mel_target"]

    def l1_l2(pred):
        diff = (pred - target) * fmask
        return diff.abs().sum() / n_cells, (diff**2).sum() / n_cells

    l1_pre, l2_pre = l1_l2(out["mel_pre"])
    l1_post, l2_post = l1_l2(out["mel_post"])
    tmask = out["text_mask"].float()  # (B, L)
    dur_target = torch.log1p(out["durations"].float())  # (B, L)
    dur = (((out["log_dur"] - dur_target) * tmask) ** 2).sum() / tmask.sum()
    ctc = forward_sum_loss(out["attn_logits"], text_lens, mel_lens)
    binl = binarization_loss(out["attn_hard"], out["attn_soft"])
    mel_loss = l1_pre + l2_pre + l1_post + l2_post
    total = mel_loss + dur + ctc + bin_weight * binl
    terms = {
        "mel": mel_loss,
        "mel_l1": l1_post,
        "duration": dur,
        "forward_sum": ctc,
        "binarization": binl,
    }
    if "lf0_pred" in out:  # pitch: log-F0 MSE on voiced frames, voicing BCE on every valid frame
        valid = out["mel_mask"].float()  # (B, F)
        voiced = out["voiced"] * valid  # (B, F) target
        n_voiced = voiced.sum().clamp(min=1.0)
        pitch = (((out["lf0_pred"] - out["lf0"]) ** 2) * voiced).sum() / n_voiced
        bce = torch.nn.functional.binary_cross_entropy_with_logits(
            out["voiced_logit"], out["voiced"], reduction="none"
        )
        voicing = (bce * valid).sum() / valid.sum().clamp(min=1.0)
        total = total + pitch + voicing
        with torch.no_grad():  # readable metrics: F0 RMS error in cents on voiced frames, voicing error rate
            cents = (out["lf0_pred"] - out["lf0"]) * f0_log_std * (1200.0 / math.log(2.0))
            terms["f0_rmse_cents"] = torch.sqrt(((cents**2) * voiced).sum() / n_voiced)
            wrong = ((out["voiced_logit"] > 0).float() != out["voiced"]).float()
            terms["voicing_error"] = (wrong * valid).sum() / valid.sum().clamp(min=1.0)
        terms["pitch"] = pitch
        terms["voicing"] = voicing
    return {"total": total, **terms}


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def acoustic_from_checkpoint(ckpt: dict, *, ema: bool = True) -> AcousticModel:
    """Build the model of a checkpoint dict (see model.checkpoint), EMA weights by default, eval mode."""
    from model.checkpoint import model_from_checkpoint

    return model_from_checkpoint(ckpt, MODEL_KIND, AcousticConfig, AcousticModel, ema=ema)
