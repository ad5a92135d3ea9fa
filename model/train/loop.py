"""The training loop: :func:`run_training` does all but a model kind's part (its
:class:`~model.train.task.TrainTask`): optimiser, EMA, precision, checkpoints, validation, samples,
TensorBoard, DDP, stopping on ``--max-steps``/``--max-minutes``/``--max-cpu-minutes``/SIGTERM/Ctrl-C
(:class:`LoopSettings`); and the summary table the CLI prints.

``--max-cpu-minutes`` counts the CPU time of the training process (``time.process_time``: every
thread of this process, user + system; not DataLoader worker processes), so runs compared at an equal
budget on a machine shared with other jobs get the same compute whatever their wall-clock share."""

from __future__ import annotations

import copy
import json
import logging
import math
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from model.checkpoint import CHECKPOINT_FORMAT, cpu_state, save_checkpoint, versions
from model.train.config import TrainConfig
from model.train.distributed import rank_and_world, setup_distributed
from model.train.loaders import to_device
from model.train.optim import EMA, autocast_context, make_optimizer, make_scheduler
from model.train.rundir import RunDir, setup_file_logging
from model.train.task import TrainTask

log = logging.getLogger(__name__)


class _StopFlag:
    """SIGTERM (and SIGINT handled as KeyboardInterrupt) -> finish the step, save, stop."""

    def __init__(self) -> None:
        self.reason: str | None = None
        self._previous = None

    def __enter__(self) -> _StopFlag:
        try:
            self._previous = signal.signal(signal.SIGTERM, self._handler)
        except ValueError:  # not the main thread
            self._previous = None
        return self

    def _handler(self, signum, frame) -> None:
        self.reason = "SIGTERM"

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


def _scalar(v: float | Tensor) -> float:
    return float(v.detach().float().item()) if isinstance(v, Tensor) else float(v)


@dataclass(frozen=True)
class LoopSettings:
    """How one invocation of the loop runs: where it stops and whether it shows a progress bar."""

    max_steps: int | None = None  # the global step to stop at (None: the schedule's length, cfg.steps)
    max_minutes: float | None = None  # wall-clock minutes of training in this invocation
    max_cpu_minutes: float | None = None  # CPU minutes of this process in this invocation (cpu_clock)
    progress: bool = True  # a tqdm bar (rank 0)
    cpu_clock: Callable[[], float] = time.process_time  # seconds of this process's CPU time

    @classmethod
    def from_args(cls, args) -> LoopSettings:
        """The limits of a :class:`~model.train.config.TrainArgs` (the command line)."""
        return cls(
            max_steps=args.max_steps, max_minutes=args.max_minutes, max_cpu_minutes=args.max_cpu_minutes
        )


def run_training(
    task: TrainTask,
    cfg: TrainConfig,
    run: RunDir,
    *,
    device: torch.device,
    resume_from: dict | None = None,
    settings: LoopSettings = LoopSettings(),
) -> dict:
    """Train ``task.model`` until ``settings.max_steps`` (global; default ``cfg.steps``),
    ``max_minutes`` of this invocation, ``max_cpu_minutes`` of this process's CPU time in this
    invocation (read from ``settings.cpu_clock``, seconds), a SIGTERM or Ctrl-C. Saves last.pt at the
    end in every case.

    Returns a summary: {"step", "start_step", "stopped" (reason), "last_loss", "history" [(step,
    loss)], "val" (last validation metrics), "best_val", "checkpoint", "seconds", "cpu_seconds",
    "steps_per_s"}.
    """
    rank, _, distributed = rank_and_world()
    if distributed:
        setup_distributed(device)
    torch.manual_seed(cfg.seed + rank)  # the training stream (batches' noise, dropout), per rank
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True

    previous_threads = torch.get_num_threads()
    if device.type == "cpu" and cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    try:
        return _train_loop(task, cfg, run, device, resume_from, settings)
    finally:
        torch.set_num_threads(previous_threads)


def _train_loop(
    task: TrainTask,
    cfg: TrainConfig,
    run: RunDir,
    device: torch.device,
    resume_from: dict | None,
    settings: LoopSettings,
) -> dict:
    from model.train.precision import effective_precision

    rank, world, distributed = rank_and_world()
    main = rank == 0
    max_steps = cfg.steps if settings.max_steps is None else settings.max_steps
    max_minutes, max_cpu_minutes = settings.max_minutes, settings.max_cpu_minutes
    cpu_clock = settings.cpu_clock
    model = task.model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(params, cfg)
    scheduler = make_scheduler(optimizer, cfg)
    use_scaler = device.type == "cuda" and cfg.precision == "fp16"
    scaler = torch.amp.GradScaler(device.type, enabled=use_scaler)
    ema = EMA(model, cfg.ema_decay)
    step = 0
    best_val = math.inf
    if resume_from is not None:
        model.load_state_dict(resume_from["model"])
        ema.load_state_dict(resume_from["ema"])
        optimizer.load_state_dict(resume_from["optimizer"])
        scheduler.load_state_dict(resume_from["scheduler"])
        if resume_from.get("scaler"):
            scaler.load_state_dict(resume_from["scaler"])
        step = int(resume_from["step"])
        task.load_aux_state_dict(resume_from.get("aux"))
        best_val = float(resume_from.get("metrics", {}).get("best_val", math.inf))
        log.info("resumed %s from step %d", task.kind, step)
    start_step = step

    train_model: nn.Module = model
    if cfg.compile and not distributed:  # issue 16: compiled lazily at the first step
        from model.train.precision import compile_module

        train_model = compile_module(model, device)
    if distributed:
        from torch.nn.parallel import DistributedDataParallel

        train_model = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )

    writer = None
    file_handler = None
    eval_model = None
    if main:
        run.create()
        file_handler = setup_file_logging(run)
        run.config.write_text(json.dumps(task.config_dict(), indent=2, default=str) + "\n")
        try:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(str(run.tb), purge_step=step if step else None)
        except ImportError:
            log.warning("tensorboard is not installed: no TensorBoard logging")
        eval_model = copy.deepcopy(model).eval()
        for p in eval_model.parameters():
            p.requires_grad_(False)
        n_params = sum(p.numel() for p in model.parameters())
        log.info(
            "training %s (%.3fM parameters) on %s%s, precision %s, steps %d -> %d",
            task.kind,
            n_params / 1e6,
            device,
            f" x{world} (DDP)" if distributed else "",
            effective_precision(device, cfg.precision) + (", compiled" if cfg.compile else ""),
            step,
            max_steps,
        )

    history: list[tuple[int, float]] = []
    last_val: dict[str, float] = {}
    metrics_state = {"best_val": best_val}
    t_start = time.monotonic()
    cpu_start = cpu_clock()
    last_save = t_start
    saved_metrics = resume_from.get("metrics", {}) if resume_from else {}
    train_seconds = float(saved_metrics.get("train_seconds", 0.0))
    cpu_seconds = float(saved_metrics.get("cpu_seconds", 0.0))  # summed over the run's invocations

    def checkpoint(path: Path, val: dict | None = None) -> None:
        ckpt = {
            "format": CHECKPOINT_FORMAT,
            "kind": task.kind,
            "step": step,
            "model": cpu_state(model.state_dict()),
            "ema": ema.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),
            "config": task.config_dict(),
            "versions": versions(),
            **({"aux": aux} if (aux := task.aux_state_dict()) is not None else {}),
            "metrics": {
                "best_val": metrics_state["best_val"],
                "val": dict(val or last_val),
                "train_seconds": train_seconds + (time.monotonic() - t_start),
                "cpu_seconds": cpu_seconds + (cpu_clock() - cpu_start),
                "last_loss": history[-1][1] if history else None,
            },
        }
        save_checkpoint(path, ckpt)
        log.info("saved %s (step %d)", path, step)

    def evaluate() -> None:
        nonlocal last_val
        ema.copy_to(eval_model)
        with torch.no_grad():
            last_val = {k: float(v) for k, v in task.validate(eval_model, device).items()}
        if writer is not None:
            for k, v in last_val.items():
                writer.add_scalar(f"val/{k}", v, step)
        if "loss" in last_val:
            extra = " ".join(f"{k} {v:.4f}" for k, v in last_val.items() if k != "loss")
            log.info("step %d: val loss %.4f%s", step, last_val["loss"], f" ({extra})" if extra else "")
            if last_val["loss"] < metrics_state["best_val"]:
                metrics_state["best_val"] = last_val["loss"]
                checkpoint(run.best, last_val)

    def samples() -> None:
        if writer is None:
            return
        ema.copy_to(eval_model)
        task.log_samples(eval_model, writer, step, device)
        writer.flush()

    stop = _StopFlag()
    batches = task.train_batches(device)
    bar = None
    if main and settings.progress:
        from tqdm import tqdm

        bar = tqdm(
            total=max_steps, initial=step, unit="step", dynamic_ncols=True, mininterval=1.0, desc=task.kind
        )
    stopped = "max_steps"
    window_t, window_steps = time.monotonic(), 0
    smooth = None
    bad_steps = 0
    try:
        with stop:
            model.train()
            while step < max_steps:
                out_of_cpu = max_cpu_minutes is not None and cpu_clock() - cpu_start >= 60.0 * max_cpu_minutes
                halt = (
                    stop.reason is not None
                    or (max_minutes is not None and time.monotonic() - t_start >= 60.0 * max_minutes)
                    or out_of_cpu
                )
                if distributed:  # every rank must agree on stopping
                    flag = torch.tensor([1.0 if halt else 0.0], device=device)
                    torch.distributed.all_reduce(flag)
                    halt = bool(flag.item() > 0)
                if halt:
                    stopped = stop.reason or ("max_cpu_minutes" if out_of_cpu else "max_minutes")
                    break
                batch = to_device(next(batches), device)
                task.step = step
                with autocast_context(device, cfg.precision):
                    loss, metrics = task.loss(train_model, batch)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
                grad_norm = (
                    torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                    if cfg.grad_clip > 0
                    else torch.sqrt(sum((p.grad.float() ** 2).sum() for p in params if p.grad is not None))
                )
                loss_value = _scalar(loss)
                if not (math.isfinite(loss_value) and math.isfinite(_scalar(grad_norm))):
                    bad_steps += 1
                    log.warning("step %d: non-finite loss/gradient (%s), update skipped", step, loss_value)
                    if bad_steps >= 20:
                        raise RuntimeError("20 consecutive non-finite steps; giving up")
                    optimizer.zero_grad(set_to_none=True)
                    scaler.update()
                    continue
                bad_steps = 0
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                ema.update(model, step)
                step += 1
                window_steps += 1
                history.append((step, loss_value))
                smooth = loss_value if smooth is None else 0.95 * smooth + 0.05 * loss_value
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(
                        loss=f"{smooth:.4f}", lr=f"{scheduler.get_last_lr()[0]:.2e}", refresh=False
                    )
                if not main:
                    continue
                if writer is not None and (step % cfg.log_every == 0 or step == max_steps):
                    now = time.monotonic()
                    writer.add_scalar("train/loss", loss_value, step)
                    for k, v in metrics.items():
                        writer.add_scalar(f"train/{k}", _scalar(v), step)
                    writer.add_scalar("train/lr", scheduler.get_last_lr()[0], step)
                    writer.add_scalar("train/grad_norm", _scalar(grad_norm), step)
                    writer.add_scalar("train/steps_per_s", window_steps / max(now - window_t, 1e-9), step)
                    writer.add_scalar("train/cpu_seconds", cpu_seconds + cpu_clock() - cpu_start, step)
                    window_t, window_steps = now, 0
                if cfg.val_every > 0 and step % cfg.val_every == 0:
                    evaluate()
                if cfg.sample_every > 0 and step % cfg.sample_every == 0:
                    samples()
                if time.monotonic() - last_save >= 60.0 * cfg.checkpoint_minutes:
                    checkpoint(run.last)
                    last_save = time.monotonic()
    except KeyboardInterrupt:
        stopped = "interrupted"
        log.warning("interrupted at step %d: saving", step)
    finally:
        if bar is not None:
            bar.close()
    seconds = time.monotonic() - t_start
    cpu_used = cpu_clock() - cpu_start
    if main:
        if stopped != "interrupted" and step > start_step:  # end of a chunk: validate/sample unless just done
            if cfg.val_every == 0 or step % cfg.val_every != 0:
                evaluate()
            if cfg.sample_every == 0 or (cfg.sample_every > 0 and step % cfg.sample_every != 0):
                samples()
        checkpoint(run.last)
        if writer is not None:
            writer.close()
        if file_handler is not None:
            logging.getLogger("model").removeHandler(file_handler)
            file_handler.close()
    if distributed:
        torch.distributed.barrier()
    done = step - start_step
    return {
        "kind": task.kind,
        "step": step,
        "start_step": start_step,
        "stopped": stopped,
        "last_loss": history[-1][1] if history else None,
        "history": history,
        "val": last_val,
        "best_val": metrics_state["best_val"],
        "checkpoint": str(run.last),
        "seconds": seconds,
        "cpu_seconds": cpu_used,
        "steps_per_s": done / seconds if seconds > 0 else 0.0,
    }


def summary_table(summary: dict) -> str:
    """A short fixed-width table of a run's outcome (printed last by the CLI)."""
    rows = [
        ("model", summary.get("kind", "")),
        ("steps", f"{summary['start_step']} -> {summary['step']}"),
        ("stopped by", summary["stopped"]),
        ("last loss", "-" if summary["last_loss"] is None else f"{summary['last_loss']:.4f}"),
        ("val loss", "-" if "loss" not in summary["val"] else f"{summary['val']['loss']:.4f}"),
        ("best val", "-" if not math.isfinite(summary["best_val"]) else f"{summary['best_val']:.4f}"),
        ("steps/s", f"{summary['steps_per_s']:.2f}"),
        ("minutes", f"{summary['seconds'] / 60:.1f}"),
        ("CPU minutes", f"{summary['cpu_seconds'] / 60:.1f}" if "cpu_seconds" in summary else "-"),
        ("checkpoint", summary["checkpoint"]),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
