"""The Parallel WaveNet student: Gaussian inverse autoregressive flows, white noise in, audio out.

    z ~ N(0, I)  (B, T)                                   -- an explicit input (ONNX, reproducibility)
    x_0 = z;   x_k[t] = x_{k-1}[t] * exp(log_s_k[t]) + mu_k[t],   k = 1..K
    (mu_k, log_s_k)[t] = flow_k(x_{k-1}[<t], mel, speaker)   -- strictly causal in x_{k-1}

Every flow is a WaveNet-like residual stack (:class:`~model.wavenet.WaveNetStack` with
``skip_channels=0``: no skip path, the last residual output feeds a 1x1 head giving (mu, log_s)).
Because flow k only looks at x_{k-1}[<t], x_k[t] given z_<t is an affine function of z[t], so the
composed flows imply one Gaussian per sample (Parallel WaveNet / ClariNet):

    log_scale[t] = sum_k log_s_k[t]                       (the total scale is the product)
    mean[t]      = mean_{k-1}[t] * exp(log_s_k[t]) + mu_k[t]   (the mean accumulates)
    x_K[t]       = z[t] * exp(log_scale[t]) + mean[t]

:meth:`StudentIAF.forward` computes x and, on request, (mean, log_scale) in one parallel pass over
the whole sequence: the Python loops run over flows and layers (a fixed, small number), never over
time. The distillation loss (``model.train.student``) scores x with the frozen teacher in one
teacher-forced pass and compares the two Gaussians per sample in closed form.

Conditioning. One :class:`~model.wavenet.ConditioningNetwork` (log-mel + speaker embedding, frame
rate) is shared by all flows -- every flow vocodes the same mel, so one feature extractor serves
all, at a quarter of the frame-rate cost and parameters of one per flow; its shape can match the
teacher's so distillation can start from the teacher's trained one. Every layer of every flow then
needs its own projection of those features; all of them are one 1x1 conv at the *frame* rate (the
flows' projection weights concatenated, :meth:`StudentIAF.frame_conditioning`), and each layer
upsamples only its own slice inside the stack (3 multiply-adds per channel per sample).

Identity start (WaveGlow). Each flow's head is zero-initialised, so mu_k = 0 and log_s_k = 0 at
initialisation and the untrained student outputs z itself; training moves away from the identity.

Export. ``forward(z (B, T), mel (B, n_mels, F), speaker (B,) | None) -> audio (B, T)`` with
T = F * hop, clamped to [-1, 1]: no loop over time, no data-dependent control flow (the ``if``s
test Python configuration only), noise as an input. For a split graph,
:meth:`frame_conditioning` (mel, speaker -> (B, n_cond, F), cheap, frame rate) and
:meth:`synthesize` (z, cond_frames -> audio) compose to ``forward``. Temperature = scale z.

Chunking (streaming, bounded memory). Output sample t depends on z[t - rf + 1 .. t] (rf =
:attr:`StudentConfig.receptive_field`) and on mel frames within a few frames of t, so synthesizing
frames [a, b) from the mel and noise of frames [a - left, b + right) (``left, right =
cfg.context_frames``) and keeping the middle gives exactly the samples of the whole-utterance pass.

Speed (``python -m bench.student_speed``): through ONNX Runtime on this 2-core CPU the cost is
roughly proportional to layers x channels -- the small convolutions and the gate's elementwise ops
are memory-bound -- and independent of the dilations, so the cpu preset spends its budget on depth
and receptive field at 16 channels. Measured and left out: int8 dynamic quantisation (3x slower),
an export-time rebuild folding the residual scaling and splitting the gate convs (<= 10 %),
nearest-neighbour instead of learned upsampling (~8 %).
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, fields, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model.checkpoint import model_from_checkpoint
from model.upsampling import UPSAMPLE_MODES
from model.wavenet import (
    CausalConv1d,
    ConditioningNetwork,
    Layout,
    WaveNetStack,
    apply_weight_norm,
    frame_projection,
)

__all__ = [
    "MODEL_KIND",
    "PRESETS",
    "IAFFlow",
    "StudentConfig",
    "StudentIAF",
    "load_student",
    "preset",
    "student_from_checkpoint",
]

log = logging.getLogger(__name__)

MODEL_KIND = "student"


def flow_dilations(layers: int, cycle: int) -> tuple[int, ...]:
    """Dilations 1, 2, ..., 2^(cycle-1), restarting every ``cycle`` layers (the last cycle may be cut):
    ``flow_dilations(5, 3) -> (1, 2, 4, 1, 2)``."""
    if layers <= 0 or cycle <= 0:
        raise ValueError(f"need layers > 0 and a dilation cycle > 0, got {layers}, {cycle}")
    return tuple(2 ** (i % cycle) for i in range(layers))


@dataclass(frozen=True)
class StudentConfig:
    # audio / features (must match the corpus' AudioConfig: hop is the upsampling factor)
    sample_rate: int = 16_000
    hop_length: int = 200
    n_mels: int = 80
    mel_mean: float = -4.0  # fixed normalisation of the log-mel: (mel - mean) / std
    mel_std: float = 4.0
    # speakers (global conditioning through the shared conditioning network; 1 = none)
    n_speakers: int = 1
    speaker_dim: int = 16
    # shared conditioning network (frame rate) and upsampling
    cond_channels: int = 64
    cond_layers: int = 2
    cond_kernel: int = 3
    upsample: str = "learned"  # nearest | linear | learned (see model.upsampling)
    # flows: one residual stack per entry, with that many layers
    flow_layers: tuple[int, ...] = (10, 10, 10, 30)
    dilation_cycle: int = 10  # layers per dilation cycle 1, 2, ..., 2^(cycle-1)
    residual_channels: int = 64
    gate_channels: int = 64
    kernel_size: int = 3
    input_kernel: int = 1
    weight_norm: bool = False
    # sample-rate excitation from F0 ([sin, cos, voiced], core.excitation) added to every flow's
    # input through a zero-initialised 1x1 conv; 0 = mel-only (the flows start as before)
    excitation_channels: int = 3

    def __post_init__(self) -> None:
        object.__setattr__(self, "flow_layers", tuple(int(n) for n in self.flow_layers))
        if not self.flow_layers or min(self.flow_layers) < 1:
            raise ValueError(
                f"flow_layers must be a non-empty tuple of positive ints, got {self.flow_layers}"
            )
        flow_dilations(1, self.dilation_cycle)  # validates the cycle
        if self.upsample not in UPSAMPLE_MODES:
            raise ValueError(f"upsample must be one of {UPSAMPLE_MODES}, got {self.upsample!r}")
        if self.n_speakers < 1 or self.input_kernel < 1 or self.kernel_size < 2:
            raise ValueError("need n_speakers >= 1, input_kernel >= 1, kernel_size >= 2")
        if self.excitation_channels < 0:
            raise ValueError(f"excitation_channels must be >= 0, got {self.excitation_channels}")

    @property
    def n_flows(self) -> int:
        return len(self.flow_layers)

    def dilations(self, flow: int) -> tuple[int, ...]:
        return flow_dilations(self.flow_layers[flow], self.dilation_cycle)

    @property
    def receptive_field(self) -> int:
        """Noise samples z[t - rf + 1 .. t] an output x[t] depends on (flows compose their contexts)."""
        return 1 + sum(
            (self.kernel_size - 1) * sum(self.dilations(k)) + self.input_kernel for k in range(self.n_flows)
        )

    @property
    def context_frames(self) -> tuple[int, int]:
        """Mel frames (left, right) beyond a chunk that its samples depend on (see the module docstring):
        the conditioning network's look-around, the upsampler's neighbour frame and, on the left, the
        noise receptive field."""
        around = self.cond_layers * (self.cond_kernel // 2) + 1
        return around + -(-(self.receptive_field - 1) // self.hop_length), around

    def macs_per_sample(self) -> int:
        """Multiply-adds per output sample at the sample rate (frame-rate work excluded): dilated
        convs, 1x1 outputs, 3-tap conditioning upsampling, input conv and heads."""
        R, G, k = self.residual_channels, self.gate_channels, self.kernel_size
        per_layer = k * R * 2 * G + G * R + (3 * 2 * G if self.upsample != "nearest" else 0)
        per_flow = (self.input_kernel + self.excitation_channels) * R + 2 * R
        return sum(self.flow_layers) * per_layer + self.n_flows * per_flow

    def to_dict(self) -> dict:
        d = asdict(self)
        d["flow_layers"] = list(self.flow_layers)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> StudentConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown StudentConfig fields: {sorted(unknown)}")
        d = dict(d)
        d.setdefault("excitation_channels", 0)  # saved before excitation existed: a mel-only student
        if "flow_layers" in d:
            d["flow_layers"] = tuple(d["flow_layers"])
        return cls(**d)


# Named presets. Parameters and ONNX Runtime speed: `python -m bench.student_speed`.
PRESETS: dict[str, StudentConfig] = {
    # unit tests: a few thousand parameters
    "tiny": StudentConfig(
        cond_channels=8,
        cond_layers=1,
        upsample="linear",
        flow_layers=(2, 2),
        dilation_cycle=2,
        residual_channels=8,
        gate_channels=8,
        kernel_size=2,
    ),
    # the 2-core CPU student, chosen by measurement (`python -m bench.student_speed`): on this
    # machine's ONNX Runtime the cost is ~ layers x channels (small convs are memory-bound), about
    # 0.08 CPU-s per audio-s here, and the receptive field is free (dilations cost nothing): 4 flows
    # of 6 layers (dilations 1..32), 16 channels, receptive field 257 samples (pitch periods down to
    # 62 Hz). Conditioning shaped like the cpu teacher's (32 channels, 2 layers) so it starts from it.
    "cpu": StudentConfig(
        cond_channels=32,
        cond_layers=2,
        flow_layers=(6, 6, 6, 6),
        dilation_cycle=6,
        residual_channels=16,
        gate_channels=16,
        kernel_size=2,
    ),
    # Parallel WaveNet's layout: 4 flows of 10, 10, 10, 30 layers, 64 channels, kernel 3, dilations
    # 1..512; conditioning shaped like the gpu teacher's (128 channels, 3 layers)
    "gpu": StudentConfig(
        cond_channels=128,
        cond_layers=3,
        flow_layers=(10, 10, 10, 30),
        dilation_cycle=10,
        residual_channels=64,
        gate_channels=64,
        kernel_size=3,
    ),
}


def preset(name: str, **overrides) -> StudentConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown student preset {name!r}; choose from {sorted(PRESETS)}")
    return replace(PRESETS[name], **overrides)


class IAFFlow(nn.Module):
    """One Gaussian IAF step: (mu, log_s)[t] from x[<t] and the conditioning; x' = x * exp(log_s) + mu.

    x (B, T) -> shifted right one sample -> causal input conv (+ 1x1 of the excitation, zero-
    initialised) -> residual stack (no skips) -> 1x1 head (zero-initialised: the flow starts as
    the identity) -> mu (B, T), log_s (B, T).
    """

    def __init__(self, cfg: StudentConfig, layers: int):
        super().__init__()
        R = cfg.residual_channels
        self.input_conv = CausalConv1d(1, R, cfg.input_kernel)
        self.excitation_conv = None
        if cfg.excitation_channels:
            self.excitation_conv = nn.Conv1d(cfg.excitation_channels, R, 1)
            nn.init.zeros_(self.excitation_conv.weight)  # a mel-only flow's output at first
            nn.init.zeros_(self.excitation_conv.bias)
        self.stack = WaveNetStack(
            R,
            cfg.gate_channels,
            0,  # no skip outputs: the last residual output is the flow's features
            cfg.kernel_size,
            flow_dilations(layers, cfg.dilation_cycle),
            cond_channels=cfg.cond_channels,
            hop_length=cfg.hop_length,
            upsample=cfg.upsample,
        )
        self.head = nn.Conv1d(R, 2, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def params(
        self,
        x: Tensor,
        cond_frames: Tensor,
        excitation: Tensor | None = None,
        layout: Layout = Layout.CHANNELS_LAST,
    ) -> tuple[Tensor, Tensor]:
        """x (B, T) fp32 (or fp64), cond_frames (B, L*2G, F), excitation (B, E, T) or None -> mu (B, T),
        log_s (B, T) in x's dtype; causal: they depend on x[<t] only (the excitation is conditioning).
        Under autocast the stack runs in low precision, the rest in x's dtype. ``layout``: the stack's
        (:class:`~model.wavenet.Layout`)."""
        with torch.autocast(device_type=x.device.type, enabled=False):
            x_in = F.pad(x[:, :-1], (1, 0))  # (B, T): x_in[t] = x[t - 1]
            h = self.input_conv(x_in.unsqueeze(1))  # (B, R, T)
            if self.excitation_conv is not None and excitation is not None:
                h = h + self.excitation_conv(excitation.to(h.dtype))  # (B, R, T)
        h = self.stack(h, cond_frames=cond_frames, layout=layout)  # (B, R, T)
        with torch.autocast(device_type=x.device.type, enabled=False):
            out = self.head(h.to(x.dtype))  # (B, 2, T)
        return out[:, 0], out[:, 1]

    def forward(
        self,
        x: Tensor,
        cond_frames: Tensor,
        excitation: Tensor | None = None,
        layout: Layout = Layout.CHANNELS_LAST,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """x (B, T) -> x' (B, T), mu (B, T), log_s (B, T)."""
        mu, log_s = self.params(x, cond_frames, excitation, layout)
        return x * torch.exp(log_s) + mu, mu, log_s


class StudentIAF(nn.Module):
    """Shared conditioning network + K IAF flows. See the module docstring."""

    def __init__(self, cfg: StudentConfig):
        super().__init__()
        self.cfg = cfg
        self.conditioning = ConditioningNetwork.from_config(cfg)
        self.flows = nn.ModuleList(IAFFlow(cfg, n) for n in cfg.flow_layers)
        self._cond_sizes = [f.stack.cond_size for f in self.flows]
        if cfg.weight_norm:  # everywhere but the zero heads (the weight norm of 0 is 0/0)
            apply_weight_norm(self.conditioning)
            for flow in self.flows:
                apply_weight_norm(flow.input_conv)
                apply_weight_norm(flow.stack)  # not the zero-initialised excitation conv (0/0)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    @property
    def receptive_field(self) -> int:
        return self.cfg.receptive_field

    # ------------------------------------------------------------------ conditioning (frame rate)

    def frame_conditioning(
        self, mel: Tensor, speaker: Tensor | None = None, layout: Layout = Layout.CHANNELS_LAST
    ) -> Tensor:
        """mel (B, n_mels, F) [+ speaker (B,)] -> every flow's every layer's gate conditioning at frame
        rate, (B, sum_k L_k * 2G, F): the shared conditioning network, then all the flows' 1x1
        projections as one conv (their weights concatenated). ``layout``: :class:`~model.wavenet.Layout`."""
        if self.cfg.n_speakers > 1 and speaker is None:
            raise ValueError("multi-speaker student: pass speaker ids")
        h = self.conditioning(mel, speaker if self.cfg.n_speakers > 1 else None)  # (B, C, F)
        weight = torch.cat([f.stack.cond_proj.weight for f in self.flows])  # (n_cond, C, 1)
        bias = torch.cat([f.stack.cond_proj.bias for f in self.flows])  # (n_cond,)
        return frame_projection(h, weight, bias, layout)  # (B, n_cond, F)

    # ------------------------------------------------------------------ the flows (sample rate)

    def _excitation(self, excitation: Tensor | None, z: Tensor) -> Tensor | None:
        """Check the excitation's shape; None means unvoiced throughout (zeros) for an excited student."""
        E = self.cfg.excitation_channels
        if not E:
            return None
        if excitation is None:
            return z.new_zeros(z.shape[0], E, z.shape[-1])
        if excitation.shape != (z.shape[0], E, z.shape[-1]):
            raise ValueError(
                f"excitation must have shape {(z.shape[0], E, z.shape[-1])}, got {tuple(excitation.shape)}"
            )
        return excitation

    def flow(
        self,
        z: Tensor,
        cond_frames: Tensor,
        excitation: Tensor | None = None,
        layout: Layout = Layout.CHANNELS_LAST,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """z (B, T) -> x (B, T), mean (B, T), log_scale (B, T): the sample and the Gaussian the
        composed flows imply for each x[t] given z[<t] (x == z * exp(log_scale) + mean)."""
        hop = self.cfg.hop_length
        if cond_frames.shape[-1] * hop != z.shape[-1]:
            raise ValueError(f"{cond_frames.shape[-1]} frames * hop {hop} != {z.shape[-1]} noise samples")
        excitation = self._excitation(excitation, z)  # (B, E, T) or None
        x = z.to(torch.promote_types(z.dtype, torch.float32))  # fp32 at least
        mean = torch.zeros_like(x)
        log_scale = torch.zeros_like(x)
        for flow, c in zip(self.flows, cond_frames.split(self._cond_sizes, dim=1), strict=True):
            mu, log_s = flow.params(x, c, excitation, layout)  # (B, T) each, from x[<t]
            scale = torch.exp(log_s)
            x = x * scale + mu
            mean = mean * scale + mu
            log_scale = log_scale + log_s
        return x, mean, log_scale

    def synthesize(
        self,
        z: Tensor,
        cond_frames: Tensor,
        excitation: Tensor | None = None,
        layout: Layout = Layout.CHANNELS_LAST,
    ) -> Tensor:
        """z (B, T), cond_frames from :meth:`frame_conditioning`, excitation (B, E, T) -> audio (B, T) in [-1, 1]."""
        hop = self.cfg.hop_length
        if cond_frames.shape[-1] * hop != z.shape[-1]:
            raise ValueError(f"{cond_frames.shape[-1]} frames * hop {hop} != {z.shape[-1]} noise samples")
        excitation = self._excitation(excitation, z)  # (B, E, T) or None
        x = z.to(torch.promote_types(z.dtype, torch.float32))  # fp32 at least
        for flow, c in zip(self.flows, cond_frames.split(self._cond_sizes, dim=1), strict=True):
            mu, log_s = flow.params(x, c, excitation, layout)
            x = x * torch.exp(log_s) + mu
        return torch.clamp(x, -1.0, 1.0)

    def forward(
        self,
        z: Tensor,
        mel: Tensor,
        speaker: Tensor | None = None,
        return_params: bool = False,
        excitation: Tensor | None = None,
        layout: Layout = Layout.CHANNELS_LAST,
    ) -> Tensor | tuple[Tensor, Tensor, Tensor]:
        """The inference signature: z (B, T) standard normal (times a temperature), mel (B, n_mels, F)
        with T == F * hop, speaker (B,) long or None (single-speaker), excitation (B, E, T) from
        :func:`core.excitation.excitation` (None: unvoiced throughout) -> audio (B, T) in [-1, 1].

        ``return_params=True`` (training): the unclamped sample x (B, T) and its Gaussian
        mean (B, T), log_scale (B, T) instead. ``layout``: :class:`~model.wavenet.Layout` (training's
        default, the fast one; export passes ``REFERENCE``).
        """
        cond_frames = self.frame_conditioning(mel, speaker, layout)  # (B, n_cond, F)
        if return_params:
            return self.flow(z, cond_frames, excitation, layout)
        return self.synthesize(z, cond_frames, excitation, layout)

    @torch.inference_mode()
    def generate(
        self,
        mel: Tensor,
        speaker: Tensor | None = None,
        *,
        temperature: float = 1.0,
        seed: int | None = None,
        noise: Tensor | None = None,
        excitation: Tensor | None = None,
    ) -> Tensor:
        """mel (B, n_mels, F) [+ excitation (B, E, F*hop)] -> audio (B, F*hop): z = temperature *
        (``noise`` or N(0, I) from ``seed``)."""
        B, _, n_frames = mel.shape
        T = n_frames * self.cfg.hop_length
        if noise is None:
            gen = torch.Generator(device=mel.device)
            gen.manual_seed(int(seed) if seed is not None else int(torch.seed() % 2**63))
            noise = torch.randn(B, T, generator=gen, device=mel.device)
        elif noise.shape != (B, T):
            raise ValueError(f"noise must have shape {(B, T)}, got {tuple(noise.shape)}")
        return self(noise * temperature, mel.float(), speaker, excitation=excitation)


# ---------------------------------------------------------------------------------- checkpoints


def student_from_checkpoint(ckpt: dict, *, ema: bool = True, for_inference: bool = True) -> StudentIAF:
    """Build a student from a checkpoint dict (config inside), EMA weights by default.
    ``for_inference`` folds weight normalisation and switches to eval mode."""
    return model_from_checkpoint(
        ckpt, MODEL_KIND, StudentConfig, StudentIAF, ema=ema, for_inference=for_inference
    )


def load_student(
    path: str | os.PathLike, *, ema: bool = True, map_location: str | torch.device = "cpu"
) -> tuple[StudentIAF, dict]:
    """Load a student checkpoint file in a fresh process: (model in eval mode, checkpoint dict)."""
    ckpt = torch.load(path, map_location=map_location, weights_only=True)
    return student_from_checkpoint(ckpt, ema=ema), ckpt
