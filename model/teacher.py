"""The WaveNet teacher: a mel-conditioned autoregressive Gaussian model of 16 kHz audio in [-1, 1].

    p(x) = prod_t N(x_t; mean_t, exp(log_scale_t)^2),   (mean_t, log_scale_t) = f(x_<t, mel, speaker)

Architecture (ClariNet-style teacher): the previous sample -> causal input conv (+ a zero-initialised
1x1 conv of the sample-rate excitation [sin, cos, voiced] of the F0, :mod:`core.excitation`;
conditioning like the mel, so it is aligned with the audio, not shifted) -> residual stack
(:class:`~model.wavenet.WaveNetStack`, gated dilated causal convs with per-layer mel conditioning
computed at frame rate, see :mod:`model.wavenet`) -> skip sum -> ReLU, 1x1, ReLU, 1x1 -> (mean,
log_scale), log_scale floored at ``log_scale_min`` (-7, ClariNet).

Training is teacher forcing: ``forward(audio, mel)`` feeds ``audio`` shifted right by one sample and
returns the distribution of every sample of ``audio`` in one parallel pass. Generation runs the very
same modules one sample at a time through their ``step`` methods (Fast WaveNet queues, O(layers) per
sample); :meth:`TeacherWaveNet.step` is a pure function of explicit tensors
``(x_prev, c_t, state, exc_t) -> (mean, log_scale, new_state)``, ready to be traced into an ONNX step
graph.

Mixed precision: under autocast (CUDA, or CPU bf16) the input conv and the output head run in fp32
(the mean must be resolved far below bf16's relative precision; the residual stream stays fp32
through the adds); so does the excitation conv, added to the input conv's output.

With ``excitation_layers`` the excitation also reaches every residual layer directly, added to its
gate conditioning through a zero-initialised 1x1 (the stack's ``excitation_proj``): a teacher
trained without it gains it with its outputs unchanged, then learns to use it (``--init``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model.checkpoint import model_from_checkpoint
from model.data.config import AudioConfig
from model.data.features import mel_filterbank
from model.distributions import TEACHER_LOG_SCALE_MIN, floor_log_scale
from model.lpc import LPCFromMel, lp_predict, lp_step
from model.upsampling import UPSAMPLE_MODES
from model.wavenet import (
    CausalConv1d,
    ConditioningNetwork,
    Layout,
    WaveNetStack,
    apply_weight_norm,
    dilation_cycle,
    pointwise,
)

__all__ = ["PRESETS", "TeacherConfig", "TeacherWaveNet", "load_teacher", "teacher_from_checkpoint"]

log = logging.getLogger(__name__)

MODEL_KIND = "teacher"


@dataclass(frozen=True)
class TeacherConfig:
    # audio / features (must match the corpus' AudioConfig: hop is the upsampling factor)
    sample_rate: int = 16_000
    hop_length: int = 200
    n_mels: int = 80
    mel_mean: float = -4.0  # fixed normalisation of the log-RMS mel: (mel - mean) / std
    mel_std: float = 4.0
    # speakers (global conditioning; 1 = none)
    n_speakers: int = 1
    speaker_dim: int = 16
    # conditioning network (frame rate) and upsampling
    cond_channels: int = 64
    cond_layers: int = 2
    cond_kernel: int = 3
    upsample: str = "learned"  # nearest | linear | learned (see model.upsampling)
    # residual stack
    residual_channels: int = 64
    gate_channels: int = 64
    skip_channels: int = 64
    kernel_size: int = 3
    layers: int = 20
    cycles: int = 2
    input_kernel: int = 1
    # output
    log_scale_min: float = TEACHER_LOG_SCALE_MIN
    weight_norm: bool = False
    # sample-rate excitation from F0 ([sin, cos, voiced], core.excitation) added to the input
    # conv's output through a zero-initialised 1x1 conv; 0 = mel-only
    excitation_channels: int = 3
    # also add the excitation to every residual layer's gate conditioning (a zero-initialised 1x1,
    # E -> L*2G, like the mel's per-layer projections): the input conv's copy of it is scaled by
    # sqrt(1/2) at every residual add, so by the last of 20 layers ~1e-3 of it is left in the stream
    excitation_layers: bool = False
    # linear prediction in the mean (issue 38; LPCNet / LP-WaveNet): per-frame LPC of this order
    # from the mel (model.lpc), mean = network output + sum_k a_k x_{t-k}, so the network models the
    # residual; 0 = off. n_fft/fmin/fmax: the mel's STFT, to take the mel back to a power spectrum
    lpc_order: int = 0
    n_fft: int = 1024
    fmin: float = 0.0
    fmax: float = 8000.0
    # under 16-bit autocast, the input conv (+ excitation conv) and the output head run in fp32 (the
    # mean must be resolved far below bf16's ~3 significant digits); False puts them under autocast
    # too: only for measuring what fp32 there buys (bench.teacher_precision)
    fp32_io: bool = True

    def __post_init__(self) -> None:
        dilation_cycle(self.layers, self.cycles)  # validates
        if self.upsample not in UPSAMPLE_MODES:
            raise ValueError(f"upsample must be one of {UPSAMPLE_MODES}, got {self.upsample!r}")
        if self.n_speakers < 1 or self.input_kernel < 1 or self.kernel_size < 2:
            raise ValueError("need n_speakers >= 1, input_kernel >= 1, kernel_size >= 2")
        if self.excitation_channels < 0:
            raise ValueError(f"excitation_channels must be >= 0, got {self.excitation_channels}")
        if self.excitation_layers and not self.excitation_channels:
            raise ValueError("excitation_layers needs excitation_channels > 0")
        if self.lpc_order < 0:
            raise ValueError(f"lpc_order must be >= 0, got {self.lpc_order}")

    @property
    def dilations(self) -> tuple[int, ...]:
        return dilation_cycle(self.layers, self.cycles)

    @property
    def receptive_field(self) -> int:
        """Past samples (including the immediately previous one) a prediction depends on."""
        stack = 1 + sum((self.kernel_size - 1) * d for d in self.dilations)
        return stack + self.input_kernel - 1

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TeacherConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown TeacherConfig fields: {sorted(unknown)}")
        d = dict(d)
        d.setdefault("excitation_channels", 0)  # saved before excitation existed: a mel-only teacher
        return cls(**d)


# Named presets. Parameter counts (80 mels, 1 speaker) are printed by
# `python -m bench.teacher_generation --list`.
PRESETS: dict[str, TeacherConfig] = {
    # unit tests: a few thousand parameters, trains for a few steps in seconds
    "tiny": TeacherConfig(
        cond_channels=8,
        cond_layers=1,
        residual_channels=8,
        gate_channels=8,
        skip_channels=8,
        kernel_size=2,
        layers=4,
        cycles=1,
        upsample="linear",
    ),
    # what a 2-core CPU session can train in an hour or two (a pipeline-grade teacher for developing
    # the student and export, not a voice): 10 layers of 32 channels, receptive field 125 (8 ms)
    "cpu": TeacherConfig(
        cond_channels=32,
        cond_layers=2,
        residual_channels=32,
        gate_channels=32,
        skip_channels=32,
        kernel_size=3,
        layers=10,
        cycles=2,
    ),
    # the real teacher (tens of minutes on an H100/H200, bf16 autocast): 24 layers in 3 cycles of
    # dilations 1..128 with kernel 3, receptive field 1531 samples (96 ms), 128 channels
    "gpu": TeacherConfig(
        cond_channels=128,
        cond_layers=3,
        residual_channels=128,
        gate_channels=128,
        skip_channels=128,
        kernel_size=3,
        layers=24,
        cycles=3,
    ),
}


class TeacherWaveNet(nn.Module):
    def __init__(self, cfg: TeacherConfig):
        super().__init__()
        self.cfg = cfg
        self.conditioning = ConditioningNetwork.from_config(cfg)
        self.input_conv = CausalConv1d(1, cfg.residual_channels, cfg.input_kernel)
        self.stack = WaveNetStack(
            cfg.residual_channels,
            cfg.gate_channels,
            cfg.skip_channels,
            cfg.kernel_size,
            cfg.dilations,
            cond_channels=cfg.cond_channels,
            hop_length=cfg.hop_length,
            upsample=cfg.upsample,
            excitation_channels=cfg.excitation_channels if cfg.excitation_layers else 0,
        )
        self.head1 = nn.Conv1d(cfg.skip_channels, cfg.skip_channels, 1)
        self.head2 = nn.Conv1d(cfg.skip_channels, 2, 1)
        if cfg.weight_norm:  # before the zero-initialised excitation conv (0/0 under weight norm)
            apply_weight_norm(self)
        self.excitation_conv = None
        if cfg.excitation_channels:
            self.excitation_conv = nn.Conv1d(cfg.excitation_channels, cfg.residual_channels, 1)
            nn.init.zeros_(self.excitation_conv.weight)  # a mel-only teacher's output at first
            nn.init.zeros_(self.excitation_conv.bias)
        self.lpc = None
        if cfg.lpc_order:
            audio = AudioConfig(
                sample_rate=cfg.sample_rate, n_fft=cfg.n_fft, hop_length=cfg.hop_length,
                n_mels=cfg.n_mels, fmin=cfg.fmin, fmax=cfg.fmax,
            )  # fmt: skip
            self.lpc = LPCFromMel(mel_filterbank(audio), cfg.n_fft, cfg.sample_rate, cfg.lpc_order)

    # ------------------------------------------------------------------ parallel (teacher forcing)

    @property
    def receptive_field(self) -> int:
        return self.stack.receptive_field + self.input_conv.context

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def frame_conditioning(
        self, mel: Tensor, speaker: Tensor | None = None, layout: Layout = Layout.CHANNELS_LAST
    ) -> Tensor:
        """mel (B, n_mels, F) [+ speaker (B,)] -> every layer's gate conditioning at frame rate (B, L*2G, F).
        ``layout``: :class:`~model.wavenet.Layout` (export passes ``REFERENCE``)."""
        if self.cfg.n_speakers > 1 and speaker is None:
            raise ValueError("multi-speaker teacher: pass speaker ids")
        h = self.conditioning(mel, speaker if self.cfg.n_speakers > 1 else None)  # (B, C, F)
        return self.stack.frame_conditioning(h, layout)

    def _head(self, skip: Tensor) -> Tensor:  # (B, S, T) -> (B, 2, T), fp32
        with torch.autocast(device_type=skip.device.type, enabled=not self.cfg.fp32_io):
            y = F.relu(self.head1(F.relu(skip.float() if self.cfg.fp32_io else skip)))
            return self.head2(y)

    def _excitation(self, excitation: Tensor | None, batch: int, samples: int, device) -> Tensor | None:
        """Check the excitation's shape, (batch, E, samples); None means unvoiced throughout (zeros) for
        an excited teacher. A mel-only teacher gets None (it has no excitation conv)."""
        E = self.cfg.excitation_channels
        if not E:
            return None
        if excitation is None:
            return torch.zeros(batch, E, samples, device=device)
        if excitation.shape != (batch, E, samples):
            raise ValueError(
                f"excitation must have shape {(batch, E, samples)}, got {tuple(excitation.shape)}"
            )
        return excitation

    def predict(
        self,
        x_in: Tensor,
        cond_frames: Tensor | None = None,
        cond: Tensor | None = None,
        excitation: Tensor | None = None,
        lpc: Tensor | None = None,
        layout: Layout = Layout.CHANNELS_LAST,
    ):
        """Distribution of each sample given the *already shifted* input: x_in[:, t] = x[t - 1].

        x_in (B, T); cond_frames (B, L*2G, F) frame-rate conditioning, or cond (B, L*2G, T) at the
        sample rate; excitation (B, E, T) at the sample rate, aligned with the *predicted* samples
        (not shifted: it is conditioning), None = unvoiced; lpc (B, p, F) per-frame LPC
        coefficients (:meth:`frame_lpc`) for an LP teacher; ``layout``: the stack's
        (:class:`~model.wavenet.Layout`). Returns mean (B, T), log_scale (B, T) (floored).
        """
        if (lpc is None) != (self.lpc is None):
            raise ValueError("pass lpc (B, lpc_order, F) exactly when the teacher has lpc_order > 0")
        excitation = self._excitation(excitation, *x_in.shape, x_in.device)  # (B, E, T) or None
        with torch.autocast(device_type=x_in.device.type, enabled=not self.cfg.fp32_io):
            h = self.input_conv(x_in.float().unsqueeze(1))  # (B, R, T)
            if excitation is not None:
                h = h + self.excitation_conv(excitation.float())  # (B, R, T)
        layer_exc = excitation if self.cfg.excitation_layers else None  # (B, E, T) or None
        skip = self.stack(
            h, cond_frames=cond_frames, cond=cond, excitation=layer_exc, layout=layout
        )  # (B, S, T)
        params = self._head(skip)  # (B, 2, T), fp32
        mean = params[:, 0]  # (B, T)
        if lpc is not None:
            mean = mean + lp_predict(x_in, lpc, self.cfg.hop_length)  # (B, T), fp32
        return mean, floor_log_scale(params[:, 1], self.cfg.log_scale_min)

    def frame_lpc(self, mel: Tensor) -> Tensor | None:
        """mel (B, n_mels, F) -> LPC coefficients a_1..a_p per frame (B, p, F), fp32; None without LP."""
        return None if self.lpc is None else self.lpc(mel)

    def forward(
        self,
        audio: Tensor,
        mel: Tensor,
        speaker: Tensor | None = None,
        excitation: Tensor | None = None,
        past_noise: float = 0.0,
        layout: Layout = Layout.CHANNELS_LAST,
    ) -> tuple[Tensor, Tensor]:
        """Teacher forcing: audio (B, T) in [-1, 1], mel (B, n_mels, F) with T == F*hop, speaker (B,),
        excitation (B, E, T) from :func:`core.excitation.excitation` (None: unvoiced throughout).
        past_noise > 0 (training only) adds Gaussian noise of that std to the teacher-forced past,
        never to the target: a past that is not the clean recording, so the conditioning (mel,
        excitation) has to carry what the past no longer does (noise-injected teacher forcing).

        Returns mean (B, T), log_scale (B, T): the predicted distribution of audio[:, t] given
        audio[:, :t] (the input is audio shifted right by one sample, zero first; the excitation is
        not shifted: excitation[:, :, t] conditions the prediction of audio[:, t]).
        """
        if audio.shape[-1] != mel.shape[-1] * self.cfg.hop_length:
            raise ValueError(
                f"audio has {audio.shape[-1]} samples, mel {mel.shape[-1]} frames * hop {self.cfg.hop_length}"
            )
        x_in = F.pad(audio[:, :-1], (1, 0))  # (B, T): x_in[t] = audio[t-1]
        if past_noise > 0:
            x_in = x_in + past_noise * torch.randn_like(x_in)  # (B, T); the target stays clean
        return self.predict(
            x_in,
            cond_frames=self.frame_conditioning(mel, speaker, layout),
            excitation=excitation,
            lpc=self.frame_lpc(mel),
            layout=layout,
        )

    # ------------------------------------------------------------------ incremental (same modules)

    def init_state(self, batch: int, device=None, dtype=torch.float32) -> list[Tensor]:
        """Zero queues: the input conv's (when its kernel > 1), one per residual layer, then (an LP
        teacher) the past samples (B, 1, p), newest first."""
        q = self.input_conv.init_queue(batch, device, dtype)
        state = ([q] if q is not None else []) + self.stack.init_state(batch, device, dtype)
        if self.lpc is not None:
            state.append(torch.zeros(batch, 1, self.cfg.lpc_order, device=device, dtype=dtype))
        return state

    def step(
        self,
        x_prev: Tensor,
        c_t: Tensor,
        state: Sequence[Tensor],
        exc_t: Tensor | None = None,
        lpc_t: Tensor | None = None,
    ) -> tuple[Tensor, Tensor, list[Tensor]]:
        """One sample: x_prev (B, 1) the previous sample, c_t (B, L*2G) this sample's per-layer
        conditioning (from :meth:`frame_conditioning` + the stack's upsampler), state from
        :meth:`init_state` or the previous step, exc_t (B, E) this sample's excitation (None:
        unvoiced), lpc_t (B, p) this sample's frame's LPC coefficients (an LP teacher). Returns
        mean (B,), log_scale (B,), new state."""
        history = None
        if self.lpc is not None:
            if lpc_t is None:
                raise ValueError("an LP teacher's step needs lpc_t (B, lpc_order)")
            *state, history = state
            history = torch.cat(
                [x_prev.to(history.dtype).unsqueeze(1), history[:, :, :-1]], dim=-1
            )  # (B, 1, p)
        has_q = self.input_conv.context > 0
        h, q_in = self.input_conv.step(x_prev, state[0] if has_q else None)  # (B, R)
        if self.excitation_conv is not None:
            if exc_t is None:
                exc_t = h.new_zeros(h.shape[0], self.cfg.excitation_channels)  # (B, E)
            exc_t = exc_t.to(h.dtype)
            h = h + pointwise(self.excitation_conv, exc_t)  # (B, R)
        layer_exc = exc_t if self.cfg.excitation_layers else None  # (B, E) or None
        skip, new_state = self.stack.step(h, c_t, state[1:] if has_q else state, layer_exc)  # (B, S)
        y = F.relu(pointwise(self.head1, F.relu(skip)))  # (B, S)
        params = pointwise(self.head2, y)  # (B, 2)
        mean = params[:, 0]  # (B,)
        if has_q:
            new_state.insert(0, q_in)
        if history is not None:
            mean = mean + lp_step(history[:, 0], lpc_t.to(history.dtype))  # (B,)
            new_state.append(history)
        return mean, floor_log_scale(params[:, 1], self.cfg.log_scale_min), new_state

    @torch.inference_mode()
    def generate(
        self,
        mel: Tensor,
        speaker: Tensor | None = None,
        *,
        temperature: float = 1.0,
        greedy: bool = False,
        seed: int | None = None,
        noise: Tensor | None = None,
        return_params: bool = False,
        progress: bool = False,
        num_threads: int | None = 1,
        excitation: Tensor | None = None,
    ):
        """Ancestral sampling (or greedy = the mean at every step), F*hop samples for F mel frames.

        mel (B, n_mels, F), speaker (B,) long, excitation (B, E, F*hop) (None: unvoiced throughout,
        zeros). Randomness: ``noise`` (B, T) standard normal when
        given, else drawn up front from a generator seeded with ``seed`` (same seed -> same audio).
        Each sample is clamped to [-1, 1] before it is fed back. ``num_threads``: CPU threads for the
        step loop (None: torch's setting). Each step is a chain of tiny ops, for which one thread is
        fastest unless the batch is large; the previous setting is restored afterwards.
        Returns audio (B, T); with ``return_params`` also the per-step mean and log_scale (B, T).
        """
        previous_threads = torch.get_num_threads()
        if num_threads is not None and mel.device.type == "cpu":
            torch.set_num_threads(num_threads)
        try:
            return self._generate(
                mel, speaker, temperature, greedy, seed, noise, return_params, progress, excitation
            )
        finally:
            torch.set_num_threads(previous_threads)

    def _generate(self, mel, speaker, temperature, greedy, seed, noise, return_params, progress, excitation):
        B, _, n_frames = mel.shape
        hop = self.cfg.hop_length
        T = n_frames * hop
        device = mel.device
        c_frames = self.frame_conditioning(mel.float(), speaker)  # (B, L*2G, F)
        lpc = self.frame_lpc(mel.float())  # (B, p, F) or None
        exc = self._excitation(excitation, B, T, device)  # (B, E, T) or None
        if exc is not None:
            exc = exc.to(device=device, dtype=torch.float32).permute(2, 0, 1).contiguous()  # (T, B, E)
        nb = self.stack.upsampler.neighbours(c_frames)  # (B, L*2G, F, 3)
        if not greedy:
            if noise is None:
                gen = torch.Generator(device=device)
                if seed is None:
                    gen.seed()  # non-deterministic, without touching the global RNG
                else:
                    gen.manual_seed(int(seed))
                noise = torch.randn(B, T, generator=gen, device=device)
            elif noise.shape != (B, T):
                raise ValueError(f"noise must have shape {(B, T)}, got {tuple(noise.shape)}")
            eps = (noise * temperature).to(device=device, dtype=torch.float32).t().contiguous()  # (T, B)
        out = torch.empty(T, B, device=device)  # time-major: row t is contiguous
        means = torch.empty(T, B, device=device) if return_params else None
        log_scales = torch.empty(T, B, device=device) if return_params else None
        state = self.init_state(B, device)
        x = torch.zeros(B, 1, device=device)
        frames = range(n_frames)
        if progress:
            from tqdm import tqdm

            frames = tqdm(frames, unit="frame", desc="teacher", leave=False)
        for f in frames:
            c_f = self.stack.upsampler.frame(nb[:, :, f])  # (hop, B, L*2G)
            for p in range(hop):
                t = f * hop + p
                mean, log_scale, state = self.step(
                    x, c_f[p], state, None if exc is None else exc[t], None if lpc is None else lpc[:, :, f]
                )  # (B,), (B,)
                sample = mean if greedy else torch.addcmul(mean, torch.exp(log_scale), eps[t])
                sample = torch.clamp(sample, -1.0, 1.0)
                out[t] = sample
                if return_params:
                    means[t] = mean
                    log_scales[t] = log_scale
                x = sample.unsqueeze(1)  # (B, 1)
        audio = out.t()  # (B, T)
        if return_params:
            return audio, means.t(), log_scales.t()
        return audio


# ---------------------------------------------------------------------------------- checkpoints


def teacher_from_checkpoint(ckpt: dict, *, ema: bool = True, for_inference: bool = True) -> TeacherWaveNet:
    """Build a teacher from a checkpoint dict (see model.checkpoint): config inside, EMA weights
    by default. ``for_inference`` folds weight normalisation and switches to eval mode."""
    return model_from_checkpoint(
        ckpt, MODEL_KIND, TeacherConfig, TeacherWaveNet, ema=ema, for_inference=for_inference
    )


def load_teacher(
    path: str | os.PathLike, *, ema: bool = True, map_location: str | torch.device = "cpu"
) -> tuple[TeacherWaveNet, dict]:
    """Load a teacher checkpoint file in a fresh process: (model in eval mode, checkpoint dict)."""
    ckpt = torch.load(path, map_location=map_location, weights_only=True)
    return teacher_from_checkpoint(ckpt, ema=ema), ckpt


def preset(name: str, **overrides) -> TeacherConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown teacher preset {name!r}; choose from {sorted(PRESETS)}")
    return replace(PRESETS[name], **overrides)
