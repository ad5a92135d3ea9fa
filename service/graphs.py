"""Every ONNX graph's interface: input/output names, dtypes, axes, the opset (torch-free).

The one place that fixes them: ``export/onnx.py`` exports against these specs, the engine
(``service/engine.py``) feeds and checks sessions against them, and the tests build fixtures from
them. A graph whose inputs or outputs disagree with its spec is refused when a voice loads.

Axes are named; names in :data:`DYNAMIC_AXES` are dynamic in the exported graph (batch size, text
and audio lengths), every other name is a size fixed by the model (``n_mels``, ``cond``, ...).

Graphs (roles) in a voice bundle:

Speakers (bundle format 3): every graph that conditions on the speaker takes ``speaker_weights``
(B, S) float, a weight per speaker of the bundle for each row: one-hot for one speaker, a convex mix
for a blend (``slt(2)+rms(1)`` -> [0, 1/3, 2/3] with speakers (awb, rms, slt)). The graphs multiply it
into their speaker embedding tables (``weights @ table``; one-hot gives the table row exactly), so a
blend is a weighted mean of the speakers' embeddings in every model. Format 2 bundles have
``speaker`` (B,) int64 ids instead (:data:`LEGACY_SPECS`): they still load and speak, but cannot blend.

``acoustic``      phonemes (B, L) int64 [0 = pad], lengths (B,), speaker_weights (B, S), speed (B,) float,
                  pitch (B,) float semitones (0 = the voice's own)
                  -> mel (B, n_mels, F) log-mel, silence past each row's length; durations (B, L)
                  frames per phoneme; frames (B,) valid mel frames per row; f0 (B, F) Hz per
                  frame, 0 where unvoiced (and past each row's length).
``student``       z (B, F*hop) standard normal noise, mel (B, n_mels, F), speaker_weights (B, S),
                  excitation (B, 3, F*hop) = ``core.excitation.excitation(f0)`` (computed once
                  per utterance by the caller, sliced like z) -> audio (B, F*hop): one parallel
                  pass of the IAF flows.
``teacher_cond``  mel (B, n_mels, F), speaker_weights (B, S) -> cond (B, C, F): every residual layer's gate
                  conditioning at the *frame* rate (C = layers * 2 * gate), once per utterance.
``teacher_step``  one sample: x_prev (B, 1), cond_t (B, C) (already upsampled), exc_t (B, 3) this
                  sample's excitation, noise (B,) and the caches state_i (B, channels_i,
                  context_i) -> sample (B,) (= clamp(mean + exp(log_scale) * noise, -1, 1);
                  noise 0 = greedy), mean, log_scale, state_out_i.
``teacher_block`` what the engine runs: a run of frames per call. cond (B, C, N + 2) is frames
                  [f0 - 1, f0 + N] of ``teacher_cond``'s output (edges replicated), excitation
                  (B, 3, N*hop) the window's samples of ``core.excitation.excitation(f0)``
                  (computed once per utterance by the caller, sliced like noise; already at the
                  sample rate, not upsampled), noise (B, N*hop), x_prev (B, 1), state_i -> audio
                  (B, N*hop), x_last (B, 1), state_out_i. Inside: the 3-tap per-phase upsampling
                  of the N frames, then an ONNX ``Scan`` whose body is the ``teacher_step`` graph,
                  so the per-sample loop runs inside ONNX Runtime instead of one Python call per
                  sample.

A mel-only vocoder (``excitation_channels = 0``) ignores its excitation input (kept: every graph of
a role has one interface).

Linear-prediction teachers (``lpc_order = p > 0``, issue 38: mean = network output + LP prediction
``-sum_k a_k[f] x_{t-k}``, :mod:`model.lpc`) use an extended form of the three teacher graphs; a
graph without LP is exactly the form above, so older bundles load and speak unchanged:

``teacher_cond``  ... -> cond (B, C, F), lpc (B, p, F): the frame's LPC coefficients a_1..a_p from
                  the mel (mel -> power -> autocorrelation -> Levinson-Durbin, in the graph).
``teacher_step``  x_prev, cond_t, exc_t, lpc_t (B, p) this sample's frame's coefficients, noise,
                  state_i -> as above. The LP history (the last p samples, newest first) is the
                  *last* cache (B, 1, p): zeros at the start like every cache.
``teacher_block`` cond, excitation, lpc (B, p, N) the window's N frames of ``teacher_cond``'s
                  ``lpc`` (held for each frame's hop samples inside the graph), noise, x_prev,
                  state_i -> as above.

A voice's teacher graphs are all LP or none: the engine checks that ``teacher_cond`` has the ``lpc``
output exactly when ``teacher_block`` has the ``lpc`` input (:func:`is_lp`).

The teacher graphs have as many ``state_i`` inputs as the model has caches (the input conv's when
its kernel is > 1, then one per residual layer, then an LP teacher's history);
:func:`teacher_step` / :func:`teacher_block` build the spec for a given count. Their cache shapes
are static dims of the graph inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

OPSET = 17  # pinned: LayerNormalization is native from 17; onnxruntime >= 1.18 runs it everywhere

DYNAMIC_AXES = frozenset({"batch", "phonemes", "frames", "samples", "window"})

# numpy dtype name -> onnxruntime's type string (NodeArg.type)
ORT_TYPES = {"float32": "tensor(float)", "float16": "tensor(float16)", "int64": "tensor(int64)"}


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str  # numpy dtype name: float32 | int64
    axes: tuple[str, ...]  # one name per dimension; DYNAMIC_AXES are dynamic

    @property
    def dynamic(self) -> dict[int, str]:
        return {i: a for i, a in enumerate(self.axes) if a in DYNAMIC_AXES}

    @property
    def ort_type(self) -> str:
        return ORT_TYPES[self.dtype]


@dataclass(frozen=True)
class GraphSpec:
    role: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        """torch.onnx.export's ``dynamic_axes`` for this graph."""
        return {t.name: t.dynamic for t in self.inputs + self.outputs if t.dynamic}

    def mismatch(self, inputs, outputs) -> str | None:
        """Compare a session's ``get_inputs()``/``get_outputs()`` (objects with .name, .type, .shape)
        with this spec: None when they agree, else a one-line reason."""
        for kind, got, want in (("inputs", inputs, self.inputs), ("outputs", outputs, self.outputs)):
            names = [g.name for g in got]
            if names != [w.name for w in want]:
                return f"{self.role} graph {kind} are {names}, expected {[w.name for w in want]}"
            for g, w in zip(got, want, strict=True):
                if g.type != w.ort_type:
                    return (
                        f"{self.role} graph {kind[:-1]} {w.name!r} has type {g.type}, expected {w.ort_type}"
                    )
                if len(g.shape) != len(w.axes):
                    return f"{self.role} graph {kind[:-1]} {w.name!r} has rank {len(g.shape)}, expected {len(w.axes)}"
        return None


def _f(name: str, *axes: str) -> TensorSpec:
    return TensorSpec(name, "float32", axes)


def _i(name: str, *axes: str) -> TensorSpec:
    return TensorSpec(name, "int64", axes)


SPEAKER_WEIGHTS = "speaker_weights"  # (B, S) float: format 3
LEGACY_SPEAKER = "speaker"  # (B,) int64 ids: format 2


def _speaker(legacy: bool) -> TensorSpec:
    return _i(LEGACY_SPEAKER, "batch") if legacy else _f(SPEAKER_WEIGHTS, "batch", "speakers")


def _acoustic(legacy: bool = False) -> GraphSpec:
    return GraphSpec(
        "acoustic",
        inputs=(
            _i("phonemes", "batch", "phonemes"),
            _i("lengths", "batch"),
            _speaker(legacy),
            _f("speed", "batch"),
            _f("pitch", "batch"),
        ),
        outputs=(
            _f("mel", "batch", "n_mels", "frames"),
            _i("durations", "batch", "phonemes"),
            _i("frames", "batch"),
            _f("f0", "batch", "frames"),
        ),
    )


def _student(legacy: bool = False) -> GraphSpec:
    return GraphSpec(
        "student",
        inputs=(
            _f("z", "batch", "samples"),
            _f("mel", "batch", "n_mels", "frames"),
            _speaker(legacy),
            _f("excitation", "batch", "excitation", "samples"),
        ),
        outputs=(_f("audio", "batch", "samples"),),
    )


LPC = "lpc"  # teacher_cond's output (B, p, F) and teacher_block's input (B, p, N): LP teachers only
LPC_T = "lpc_t"  # teacher_step's input (B, p): LP teachers only


def _teacher_cond(legacy: bool = False, lp: bool = False) -> GraphSpec:
    lpc = (_f(LPC, "batch", "lpc", "frames"),) if lp else ()
    return GraphSpec(
        "teacher_cond",
        inputs=(_f("mel", "batch", "n_mels", "frames"), _speaker(legacy)),
        outputs=(_f("cond", "batch", "cond", "frames"), *lpc),
    )


ACOUSTIC = _acoustic()
STUDENT = _student()
TEACHER_COND = _teacher_cond()
TEACHER_COND_LP = _teacher_cond(lp=True)  # a linear-prediction teacher's (issue 38)
# format 2 (speaker ids): loaded for backward compatibility, no blending
LEGACY_SPECS: dict[str, GraphSpec] = {
    "acoustic": _acoustic(True),
    "student": _student(True),
    "teacher_cond": _teacher_cond(True),
}


def state_names(n: int, out: bool = False) -> list[str]:
    return [f"state_out_{i}" if out else f"state_{i}" for i in range(n)]


def _states(n: int, out: bool = False) -> tuple[TensorSpec, ...]:
    return tuple(
        _f(name, "batch", f"channels_{i}", f"context_{i}") for i, name in enumerate(state_names(n, out))
    )


def teacher_step(n_states: int, lp: bool = False) -> GraphSpec:
    """``lp``: a linear-prediction teacher's form (``lpc_t`` after ``exc_t``; its history is the last state)."""
    return GraphSpec(
        "teacher_step",
        inputs=(
            _f("x_prev", "batch", "one"),
            _f("cond_t", "batch", "cond"),
            _f("exc_t", "batch", "excitation"),
            *((_f(LPC_T, "batch", "lpc"),) if lp else ()),
            _f("noise", "batch"),
            *_states(n_states),
        ),
        outputs=(
            _f("sample", "batch"),
            _f("mean", "batch"),
            _f("log_scale", "batch"),
            *_states(n_states, True),
        ),
    )


def teacher_block(n_states: int, lp: bool = False) -> GraphSpec:
    """``lp``: a linear-prediction teacher's form (``lpc`` (B, p, N) after ``excitation``)."""
    return GraphSpec(
        "teacher_block",
        inputs=(
            _f("cond", "batch", "cond", "window"),
            _f("excitation", "batch", "excitation", "samples"),
            *((_f(LPC, "batch", "lpc", "frames"),) if lp else ()),
            _f("noise", "batch", "samples"),
            _f("x_prev", "batch", "one"),
            *_states(n_states),
        ),
        outputs=(_f("audio", "batch", "samples"), _f("x_last", "batch", "one"), *_states(n_states, True)),
    )


def count_states(input_names: list[str]) -> int:
    """How many ``state_i`` inputs a teacher graph has."""
    return sum(1 for n in input_names if n.startswith("state_"))


def is_lp(names: list[str]) -> bool:
    """Whether a teacher graph is the linear-prediction form: ``teacher_cond``'s output names or
    ``teacher_step`` / ``teacher_block``'s input names."""
    return LPC in names or LPC_T in names


# Roles a bundle may ship, and which spec each follows. fp16 variants (``<role>_fp16``) keep the
# fp32 interface: the casts are inside the graph.
FIXED_SPECS: dict[str, GraphSpec] = {"acoustic": ACOUSTIC, "student": STUDENT, "teacher_cond": TEACHER_COND}
ROLES = ("acoustic", "student", "teacher_cond", "teacher_block", "teacher_step")


def base_role(role: str) -> str:
    return role.removesuffix("_fp16")


def spec_for(
    role: str, input_names: list[str] | None = None, output_names: list[str] | None = None
) -> GraphSpec:
    """The spec of ``role`` (``<role>_fp16`` too); teacher step/block need the graph's input names,
    an LP ``teacher_cond`` its output names (without them: the form without LP)."""
    base = base_role(role)
    if base in FIXED_SPECS:
        legacy = input_names is not None and LEGACY_SPEAKER in input_names  # a format 2 graph
        if base == "teacher_cond" and output_names is not None and is_lp(output_names):
            return _teacher_cond(legacy, lp=True)
        return LEGACY_SPECS[base] if legacy else FIXED_SPECS[base]
    if base in ("teacher_step", "teacher_block"):
        if input_names is None:
            raise ValueError(f"{role}: the number of caches comes from the graph's input names")
        n, lp = count_states(input_names), is_lp(input_names)
        return teacher_step(n, lp) if base == "teacher_step" else teacher_block(n, lp)
    raise ValueError(f"unknown graph role {role!r}; expected one of {ROLES} (optionally with _fp16)")
