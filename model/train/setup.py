"""The one trainer setup every ``parawave train <model>`` goes through, before and around the loop.

:func:`prepare` turns the command line (:class:`~model.train.config.TrainArgs`) and a model kind's
:class:`ModelSpec` into a :class:`Setup`, in this order:

1. the run directory against ``--resume`` (:func:`~model.train.rundir.prepare_run`), and ``--init``
   refused with a run to resume;
2. the corpus (a :class:`UserError` when it is missing or malformed);
3. ``--set`` guards: the model fields that follow the audio config and the corpus
   (:meth:`ModelSpec.data_fields`) are never set by hand;
4. the config sections ("model", "train", "audio"): a resumed run's from its checkpoint, with
   ``--set`` that may not touch the model or the audio, checked against the corpus; a fresh run's from
   the named presets and ``--set``, with the ``--init`` checkpoint's architecture when one is given
   (checked against the corpus and the audio), then the data fields from the audio and corpus;
5. the device.

:meth:`Setup.build` seeds torch with ``train.seed`` once, just before the model is built (the
initial weights depend on the seed only), builds the task and loads the ``--init`` weights;
:meth:`Setup.train` runs :func:`~model.train.loop.run_training` with the command line's limits.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from model.checkpoint import (
    UserError,
    check_kind,
    config_sections_from_checkpoint,
    load_checkpoint,
)
from model.data.config import AudioConfig
from model.train.config import TrainArgs, apply_overrides
from model.train.distributed import resolve_device
from model.train.loop import LoopSettings, run_training
from model.train.rundir import RunDir, prepare_run
from model.train.task import TrainTask

log = logging.getLogger(__name__)

AUDIO_FIELDS = frozenset(f.name for f in dataclasses.fields(AudioConfig))


@dataclass(frozen=True)
class ModelSpec:
    """What the setup needs to know of one model kind."""

    kind: str  # the checkpoint's "kind" (model.teacher.MODEL_KIND, ...)
    config: type  # the model's frozen config class
    train_config: type  # its TrainConfig subclass
    presets: dict  # preset name -> model config
    train_presets: dict  # preset name -> train config
    # --init: (the checkpoint's saved model config dict, the run's requested model config) -> model config
    init_config: Callable[[dict, Any], Any]
    # the model fields that follow the audio config and the corpus (never set by --set): the
    # same-named fields of the audio config, then (audio, corpus) -> {field: value}
    audio_fields: tuple[str, ...] = ("sample_rate", "hop_length", "n_mels")
    corpus_fields: Callable[[AudioConfig, Any], dict[str, Any]] = lambda audio, corpus: {
        "n_speakers": len(corpus.speakers)
    }
    # --init: whether a weight the checkpoint lacks may keep this model's initialisation
    new_weight: Callable[[str], bool] = lambda key: False
    needs_symbols: bool = False  # the corpus needs its phoneme manifest and symbol table (acoustic)

    def data_fields(self, audio: AudioConfig, corpus) -> dict[str, Any]:
        """The model fields set from ``audio`` and ``corpus``."""
        return {name: getattr(audio, name) for name in self.audio_fields} | self.corpus_fields(audio, corpus)

    @property
    def classes(self) -> dict[str, type]:
        return {"model": self.config, "train": self.train_config, "audio": AudioConfig}


@dataclass(frozen=True)
class Setup:
    """A run ready to train: what :func:`prepare` found and decided."""

    spec: ModelSpec
    args: TrainArgs
    run: RunDir
    corpus: Any  # model.data.corpus.Corpus
    sections: dict[str, Any]  # "model", "train", "audio"
    device: torch.device
    resume: dict | None = None  # the checkpoint to resume (None: a fresh run)
    init: dict | None = None  # the --init checkpoint of a fresh run

    @property
    def model_cfg(self) -> Any:
        return self.sections["model"]

    @property
    def train_cfg(self) -> Any:
        return self.sections["train"]

    @property
    def audio(self) -> AudioConfig:
        return self.sections["audio"]

    @property
    def start_step(self) -> int:
        return int(self.resume["step"]) if self.resume is not None else 0

    def build(self, make_task: Callable[[], TrainTask]) -> TrainTask:
        """Seed torch with ``train.seed``, build the task (and with it the model), then load the
        ``--init`` weights into it."""
        torch.manual_seed(self.train_cfg.seed)  # the initial weights depend on the seed only
        task = make_task()
        if self.init is not None:
            load_init_weights(task.model, self.init, self.args.init, self.spec)
        return task

    def train(self, task: TrainTask) -> dict:
        """:func:`run_training` of ``task`` with this run's limits; returns its summary."""
        return run_training(
            task,
            self.train_cfg,
            self.run,
            device=self.device,
            resume_from=self.resume,
            settings=LoopSettings.from_args(self.args),
        )


def open_corpus(path: Path, needs_symbols: bool = False):
    """The corpus at ``path`` (with its phoneme manifest when ``needs_symbols``), or UserError."""
    from model.data.corpus import Corpus, CorpusError

    try:
        corpus = Corpus(path)
        if needs_symbols:
            corpus.require_manifest()
            corpus.n_symbols  # noqa: B018 -- reads symbols.json: a CorpusError now, not mid-setup
    except CorpusError as exc:
        raise UserError(str(exc)) from None
    return corpus


def reject_data_field_sets(sets: tuple[str, ...] | list[str], fields: set[str] | frozenset[str]) -> None:
    """UserError on a ``--set model.<field>`` of a model field that follows the audio or the corpus."""
    for item in sets:
        key = item.split("=", 1)[0].strip()
        section, _, name = key.partition(".")
        if section != "model" or name not in fields:
            continue
        if name in AUDIO_FIELDS:
            raise UserError(f"--set {key}: set audio.{name} instead (the model follows the audio config)")
        raise UserError(f"--set {key}: set from the corpus and the audio config, not on the command line")


def check_resume_overrides(saved: dict[str, Any], updated: dict[str, Any], frozen: tuple[str, ...]) -> None:
    """On resume, settings of the ``frozen`` sections (e.g. the model architecture) cannot change."""
    for name in frozen:
        if name in saved and saved[name] != updated[name]:
            before, after = dataclasses.asdict(saved[name]), dataclasses.asdict(updated[name])
            changed = sorted(k for k in before if before[k] != after[k])
            raise UserError(f"cannot change {', '.join(f'{name}.{k}' for k in changed)} when resuming")


def check_fits_corpus(ckpt: dict, corpus, spec: ModelSpec, where: str) -> None:
    """UserError unless the checkpoint (named ``where``: its path, or "--init PATH") was trained on the
    corpus' speakers and, for a model of phonemes, its symbol table."""
    data = ckpt["config"].get("data", {})
    saved_speakers = list(data.get("speakers", []))
    if saved_speakers != list(corpus.speakers):
        raise UserError(
            f"{where}: its speakers {saved_speakers} differ from the corpus' {list(corpus.speakers)}"
        )
    if spec.needs_symbols and data.get("symbols") != corpus.symbols:
        raise UserError(f"{where}: its symbol table differs from the corpus' symbols.json")


def resumed_sections(ckpt: dict, args: TrainArgs, run: RunDir, corpus, spec: ModelSpec) -> dict[str, Any]:
    """Config sections of a resumed run: the checkpoint's, with ``--set`` overrides that may not touch
    the model or audio sections, for a corpus the checkpoint fits."""
    check_kind(ckpt, spec.kind, run.last)
    saved = config_sections_from_checkpoint(ckpt, spec.classes)
    sections = apply_overrides(saved, args.sets)
    check_resume_overrides(saved, sections, ("model", "audio"))
    check_fits_corpus(ckpt, corpus, spec, str(run.last))
    return sections


def preset_sections(args: TrainArgs, spec: ModelSpec, audio: AudioConfig) -> dict[str, Any]:
    """Config sections of a fresh run: the named model and training presets, ``audio``, then ``--set``."""
    if args.preset not in spec.presets:
        raise UserError(f"unknown preset {args.preset!r}; choose from {', '.join(spec.presets)}")
    sections = {"model": spec.presets[args.preset], "train": spec.train_presets[args.preset], "audio": audio}
    return apply_overrides(sections, args.sets)


def prepare(args: TrainArgs, spec: ModelSpec, audio: AudioConfig | None = None) -> Setup:
    """The run of ``args`` for a model of ``spec`` (see the module's docstring). ``audio``: a fresh
    run's audio config before ``--set`` (default ``AudioConfig()``; the student takes its teacher's)."""
    run, ckpt = prepare_run(args.out, args.resume)
    if ckpt is not None and args.init is not None:
        raise UserError("--init starts a fresh run: it cannot be combined with --resume of a saved run")
    corpus = open_corpus(args.data, spec.needs_symbols)
    audio = AudioConfig() if audio is None else audio
    reject_data_field_sets(args.sets, set(spec.data_fields(audio, corpus)))
    init = None
    if ckpt is not None:
        sections = resumed_sections(ckpt, args, run, corpus, spec)
    else:
        sections = preset_sections(args, spec, audio)
        if args.init is not None:
            init = check_kind(load_checkpoint(args.init), spec.kind, f"--init {args.init}")
            check_fits_corpus(init, corpus, spec, f"--init {args.init}")
            if AudioConfig.from_dict(init["config"]["audio"]) != sections["audio"]:
                raise UserError(f"--init {args.init}: its audio settings differ from this run's")
            sections["model"] = spec.init_config(dict(init["config"]["model"]), sections["model"])
        sections["model"] = replace(sections["model"], **spec.data_fields(sections["audio"], corpus))
    device = resolve_device(args.device)
    return Setup(spec, args, run, corpus, sections, device, resume=ckpt, init=init)


def load_init_weights(model: torch.nn.Module, ckpt: dict, path: Path | None, spec: ModelSpec) -> None:
    """The ``--init`` checkpoint's weights (EMA when it has them: the averaged weights are the ones
    worth continuing). A weight it lacks keeps this model's initialisation when ``spec.new_weight``
    allows it (e.g. a per-layer excitation it predates, at zero: the run starts exactly where that
    model was); any other mismatch is a UserError."""
    result = model.load_state_dict(ckpt.get("ema") or ckpt["model"], strict=False)
    missing = [k for k in result.missing_keys if not spec.new_weight(k)]
    if missing or result.unexpected_keys:
        raise UserError(
            f"--init {path} does not fit this {spec.kind} model: missing {missing[:3]}, "
            f"unexpected {result.unexpected_keys[:3]}"
        )
    log.info(
        "%s weights initialised from %s (step %s; %d tensors it lacks keep their initialisation)",
        spec.kind,
        path,
        ckpt.get("step"),
        len(result.missing_keys),
    )
