"""``parawave synth``: synthesize with PyTorch checkpoints.

    parawave synth --model teacher --checkpoint RUN/checkpoints/best.pt --wav in.wav -o out.wav
    parawave synth --model teacher --checkpoint CKPT --mel mel.npy -o out.wav [--temperature 0.9 | --greedy] [--seed 1]
    parawave synth --model student --checkpoint STUDENT_RUN/checkpoints/best.pt --wav in.wav -o out.wav
    parawave synth --text "Hello there." --acoustic ACOUSTIC_CKPT --model teacher --checkpoint CKPT -o out.wav [--speed 1.5]

Copy-synthesis: the log-mel comes from ``--mel`` (a ``.npy`` of shape (n_mels, F)) or is computed
from ``--wav`` with the checkpoint's audio config (resampled when the rates differ). Mel sources
are gathered in :func:`input_mel`: text input (acoustic model -> mel) plugs in there as one more
source. Vocoders are looked up in :data:`VOCODERS` ("module:loader"); a loader takes
``(checkpoint dict, device)`` and returns a :class:`Vocoder`.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import typer

app = typer.Typer(add_completion=False, help="Synthesize with PyTorch checkpoints (copy-synthesis, text).")

# --model name -> "module:loader" (loader(ckpt: dict, device) -> Vocoder). The student adds itself here.
VOCODERS: dict[str, str] = {
    "teacher": "model.synth:load_teacher_vocoder",
    "student": "model.synth:load_student_vocoder",
}


@dataclass
class Vocoder:
    """A loaded vocoder: ``generate(mel (n_mels, F) float32, speaker, temperature, greedy, seed,
    f0=(F,) Hz or None)`` -> audio (F*hop,) float32 in [-1, 1] (the F0 builds the excitation)."""

    kind: str
    audio: object  # model.data.config.AudioConfig
    speakers: list[str]
    generate: Callable


class SynthError(Exception):
    """Bad input: printed as one line, exit code 2."""


def _vocoder(kind: str, ckpt: dict, device, model, run: Callable) -> Vocoder:
    """A torch vocoder behind the torch-free ``generate(mel, speaker, temperature, greedy, seed, f0)``:
    ``run(mel_t (1, n_mels, F), speaker (1,), excitation (1, 3, T) or None, temperature, greedy, seed)``
    gives (1, F*hop)."""
    import numpy as np
    import torch

    from core.excitation import excitation
    from model.data.config import AudioConfig

    model = model.to(device)
    audio = AudioConfig.from_dict(ckpt["config"]["audio"])

    def generate(
        mel: np.ndarray, speaker: int, temperature: float, greedy: bool, seed: int, f0=None
    ) -> np.ndarray:
        mel_t = torch.from_numpy(np.ascontiguousarray(mel, dtype=np.float32))[None].to(
            device
        )  # (1, n_mels, F)
        spk = torch.tensor([speaker], device=device)
        exc = None
        if f0 is not None and model.cfg.excitation_channels:
            exc = torch.from_numpy(excitation(f0, audio.hop_length, audio.sample_rate))[None].to(device)
        out = run(model, mel_t, spk, exc, temperature, greedy, seed)  # (1, F*hop)
        return out[0].float().cpu().numpy()  # (F*hop,)

    return Vocoder(kind, audio, list(ckpt["config"]["data"]["speakers"]), generate)


def load_teacher_vocoder(ckpt: dict, device) -> Vocoder:
    """The autoregressive teacher, sample by sample (with a progress bar)."""
    from model.teacher import teacher_from_checkpoint

    def run(model, mel, spk, exc, temperature, greedy, seed):
        return model.generate(
            mel, spk, temperature=temperature, greedy=greedy, seed=seed, progress=True, excitation=exc
        )

    return _vocoder("teacher", ckpt, device, teacher_from_checkpoint(ckpt), run)


def load_student_vocoder(ckpt: dict, device) -> Vocoder:
    """The Parallel WaveNet student: one parallel pass; ``--greedy`` = zero noise (the flows' mean path)."""
    from model.student import student_from_checkpoint

    def run(model, mel, spk, exc, temperature, greedy, seed):
        return model.generate(mel, spk, temperature=0.0 if greedy else temperature, seed=seed, excitation=exc)

    return _vocoder("student", ckpt, device, student_from_checkpoint(ckpt), run)


def input_mel(audio_cfg, mel: Path | None, wav: Path | None):
    """The log-mel (n_mels, F) to vocode and its F0 (F,) (None for a .npy mel: unvoiced excitation),
    from exactly one source."""
    import numpy as np

    if (mel is None) == (wav is None):
        raise SynthError("give exactly one of --mel FILE.npy or --wav FILE")
    if mel is not None:
        if not mel.is_file():
            raise SynthError(f"{mel}: not found")
        try:
            arr = np.load(mel, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise SynthError(f"{mel}: not a .npy array ({exc})") from None
        if arr.ndim != 2 or arr.shape[0] != audio_cfg.n_mels or arr.shape[1] == 0:
            raise SynthError(
                f"{mel}: expected a log-mel of shape ({audio_cfg.n_mels}, frames), got {arr.shape}"
            )
        if not np.all(np.isfinite(arr)):
            raise SynthError(f"{mel}: contains NaN or infinite values")
        return arr.astype(np.float32), None
    from model.data.audio import load_wav
    from model.data.features import log_mel, resample

    if not wav.is_file():
        raise SynthError(f"{wav}: not found")
    try:
        samples, sr = load_wav(wav)
    except Exception as exc:
        raise SynthError(f"{wav}: cannot read ({exc})") from None
    samples = resample(samples, sr, audio_cfg.sample_rate)
    if samples.shape[0] < audio_cfg.hop_length:
        raise SynthError(f"{wav}: shorter than one frame")
    from model.data.pitch import track_f0

    return log_mel(samples, audio_cfg), track_f0(samples, audio_cfg)


def text_to_mel(model, ckpt: dict, text: str, speaker: int = 0, speed: float = 1.0, pitch: float = 0.0):
    """English text -> log-mel (n_mels, F) with an acoustic model (``model.acoustic.AcousticModel``)
    and its checkpoint's symbol table, sentence by sentence, cut as the server cuts it
    (``model.text.frontend.prepare_text``).

    Returns the concatenated mel (a torch tensor) and, per sentence, {"text" (normalized),
    "phonemes" ("" when they differ from the ids), "ids", "frames", "f0"} (the F0 (F_s,) Hz of its
    frames, 0 = unvoiced). Needs the text front end (phonemizer), so not for the GPU host.
    ValueError on text with nothing to say or a bad speed/pitch (``core.limits``).
    """
    import torch

    from core.limits import check_pitch, check_speed
    from model.text import SymbolTable, default_symbols
    from model.text.frontend import prepare_text

    check_speed(speed)
    check_pitch(pitch)
    symbols = ckpt["config"]["data"].get("symbols")
    table = SymbolTable.from_dict(symbols) if symbols else default_symbols()
    mels, info = [], []
    for s in prepare_text(text, table):
        mel, durations, f0 = model.infer(
            torch.from_numpy(s.ids)[None],  # (1, L)
            torch.tensor([len(s.ids)]),
            torch.tensor([speaker]),
            speed,
            pitch,
            return_f0=True,
        )
        n = int(durations.sum())
        mels.append(mel[0, :, :n])
        info.append(
            {"text": s.normalized, "phonemes": s.phonemes, "ids": s.ids, "frames": n, "f0": f0[0, :n]}
        )
    return torch.cat(mels, dim=1), info


def text_mel(
    audio_cfg, text: str | None, acoustic: Path | None, speaker: str | None, speed: float, pitch: float = 0.0
):
    """Text -> log-mel (n_mels, F) and F0 (F,) with an acoustic-model checkpoint (its own symbols
    and speakers)."""
    import torch

    from model.acoustic import acoustic_from_checkpoint
    from model.checkpoint import UserError, check_kind, load_checkpoint

    if text is None or acoustic is None:
        raise SynthError("--text and --acoustic go together")
    try:
        ckpt = check_kind(load_checkpoint(acoustic), "acoustic", acoustic)
    except UserError as exc:
        raise SynthError(str(exc)) from None
    saved = ckpt["config"]["audio"]
    for key in ("sample_rate", "hop_length", "n_mels"):
        if saved.get(key) != getattr(audio_cfg, key):
            raise SynthError(
                f"acoustic model {key}={saved.get(key)} but the vocoder has {getattr(audio_cfg, key)}"
            )
    model = acoustic_from_checkpoint(ckpt)
    speaker_id = resolve_speaker(list(ckpt["config"]["data"]["speakers"]), speaker)
    try:
        mel, info = text_to_mel(model, ckpt, text, speaker_id, speed, pitch)
    except ValueError as exc:
        raise SynthError(str(exc)) from None
    f0 = torch.cat([i["f0"] for i in info])  # (F,) Hz
    return mel.numpy().astype("float32"), f0.numpy().astype("float32")


def resolve_speaker(speakers: list[str], speaker: str | None) -> int:
    if speaker is None:
        return 0
    if speaker in speakers:
        return speakers.index(speaker)
    if speaker.isdigit() and int(speaker) < len(speakers):
        return int(speaker)
    raise SynthError(f"unknown speaker {speaker!r}; this model has {', '.join(speakers)}")


def _load_vocoder(model: str, checkpoint: Path, device):
    from model.checkpoint import UserError, check_kind, load_checkpoint

    if model not in VOCODERS:
        raise SynthError(f"unknown --model {model!r}; choose from {', '.join(VOCODERS)}")
    try:
        ckpt = check_kind(load_checkpoint(checkpoint), model, checkpoint)
    except UserError as exc:
        raise SynthError(str(exc)) from None
    module_name, attr = VOCODERS[model].split(":")
    loader = getattr(importlib.import_module(module_name), attr)
    return loader(ckpt, device)


@app.command()
def synth(
    model: str = typer.Option(
        "teacher", "--model", "-m", help="Vocoder: teacher (autoregressive WaveNet) | student (parallel IAF)."
    ),
    checkpoint: Path = typer.Option(..., "--checkpoint", "-c", help="Vocoder checkpoint (.pt)."),
    mel: Path | None = typer.Option(None, "--mel", help="Log-mel .npy of shape (n_mels, frames)."),
    wav: Path | None = typer.Option(None, "--wav", help="Copy-synthesis: vocode the log-mel of this wav."),
    text: str | None = typer.Option(None, "--text", help="Text to speak (with --acoustic)."),
    acoustic: Path | None = typer.Option(
        None, "--acoustic", help="Acoustic model checkpoint: text -> log-mel."
    ),
    speed: float = typer.Option(1.0, "--speed", help="Speaking rate for --text, 0.25-4.0."),
    pitch: float = typer.Option(0.0, "--pitch", help="Pitch shift for --text, semitones -12..12."),
    out: Path = typer.Option(..., "--out", "-o", help="Output wav (16-bit PCM)."),
    speaker: str | None = typer.Option(
        None, "--speaker", help="Speaker name or index (multi-speaker models)."
    ),
    temperature: float = typer.Option(1.0, "--temperature", help="Scale of the sampling noise."),
    greedy: bool = typer.Option(False, "--greedy", help="Take the mean at every step instead of sampling."),
    seed: int = typer.Option(0, "--seed", help="Random seed (same seed, same audio)."),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda."),
) -> None:
    """Vocode a log-mel (a wav's log-mel, or text through an acoustic model) and write a wav."""
    try:
        import torch

        from model.data.audio import save_wav

        if device.startswith("cuda") and not torch.cuda.is_available():
            raise SynthError("--device cuda: no CUDA device is available")
        if temperature < 0:
            raise SynthError("--temperature must be >= 0")
        vocoder = _load_vocoder(model, checkpoint, torch.device(device))
        if text is not None or acoustic is not None:
            if mel is not None or wav is not None:
                raise SynthError("give --text (with --acoustic) or one of --mel/--wav, not both")
            features, f0 = text_mel(vocoder.audio, text, acoustic, speaker, speed, pitch)
        else:
            features, f0 = input_mel(vocoder.audio, mel, wav)
        speaker_id = resolve_speaker(vocoder.speakers, speaker)
        t0 = time.monotonic()
        audio = vocoder.generate(features, speaker_id, temperature, greedy, seed, f0=f0)
        elapsed = time.monotonic() - t0
        out.parent.mkdir(parents=True, exist_ok=True)
        save_wav(out, audio, vocoder.audio.sample_rate)
    except SynthError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    seconds = audio.shape[0] / vocoder.audio.sample_rate
    typer.echo(
        f"wrote {out} ({seconds:.2f} s of audio in {elapsed:.1f} s, {model}, {features.shape[1]} frames)"
    )
