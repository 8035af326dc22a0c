"""The training loop: Lightning Fabric for devices, DDP and precision; the loop never knows the model."""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn

from . import checkpoint as ckpt
from .config import Config, ConfigError, OptimConfig, TrainConfig

LossFn = Callable[[nn.Module, tuple], "tuple[torch.Tensor, dict]"]
Hook = Callable[[int, nn.Module, object], None]  # (step, model, SummaryWriter) -> None


@dataclass
class Experiment:
    """What a task hands the engine: a model, its loss, training batches, and optional evaluation and hooks."""

    model: nn.Module
    loss_fn: LossFn  # (model, batch) -> (scalar loss, extra scalars to log)
    train_batches: object  # data.batches.Batches
    evaluate: Callable[[nn.Module], dict] | None = None  # model -> {"val/loss": ..., ...}
    hooks: list[Hook] = field(default_factory=list)  # called at evaluations (and every train.viz_interval steps) with a TensorBoard writer
    tokenizer: object = None  # saved with the checkpoint when present
    samples_per_batch: int = 0  # for throughput; default: the batch's first dimension
    manual_backward: bool = False  # loss_fn fills .grad itself (hand-written backprop); the engine skips backward


def make_fabric(train: TrainConfig):
    """A Fabric for the configured accelerator, devices, strategy and precision (fp16 on CPU is an error)."""
    from lightning.fabric import Fabric

    # After the import: importing lightning.fabric sets its logger to INFO, and every DDP rank would print.
    logging.getLogger("lightning.fabric").setLevel(logging.WARNING)
    logging.getLogger("lightning.fabric.utilities.seed").setLevel(logging.WARNING)

    accelerator = train.accelerator
    if accelerator == "auto":
        accelerator = "cuda" if torch.cuda.is_available() else "cpu"
    if accelerator == "cpu" and train.precision.startswith("16"):
        raise ConfigError(f"train.precision={train.precision} needs a GPU; on CPU use 32-true or bf16-mixed")
    if train.threads > 0:
        torch.set_num_threads(train.threads)
    return Fabric(accelerator=accelerator, devices=train.devices, strategy=train.strategy,
                  num_nodes=train.num_nodes, precision=train.precision)


def shutdown(fabric) -> None:
    """Wait for every process, then tear the process group down, so that no DDP worker hangs at exit."""
    import torch.distributed as dist

    if fabric.world_size > 1 and dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def build_optimizer(optim: OptimConfig, model: nn.Module) -> torch.optim.Optimizer:
    """AdamW (decay on weight matrices only, as nanoGPT), Adam, SGD or Lion."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": optim.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    name = optim.name.lower()
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=optim.lr, betas=tuple(optim.betas))
    if name == "adam":
        return torch.optim.Adam(params, lr=optim.lr, betas=tuple(optim.betas))
    if name == "sgd":
        return torch.optim.SGD(groups, lr=optim.lr, momentum=optim.momentum, nesterov=optim.momentum > 0)
    if name == "lion":
        try:
            from lion_pytorch import Lion
        except ImportError:
            raise ConfigError("optim.name=lion needs the lion-pytorch package: pip install 'allmlp[lion]'") from None
        return Lion(groups, lr=optim.lr, betas=tuple(optim.betas))
    raise ConfigError(f"optim.name: unknown optimizer {optim.name!r}; choose adamw, adam, sgd or lion")


def lr_factor(optim: OptimConfig, progress: float, step: int) -> float:
    """Multiplier of the base lr: linear warm-up, then cosine to min_lr_ratio (or constant)."""
    if optim.warmup_steps > 0 and step < optim.warmup_steps:
        return (step + 1) / optim.warmup_steps
    if optim.schedule == "cosine":
        progress = min(max(progress, 0.0), 1.0)
        return optim.min_lr_ratio + (1 - optim.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    if optim.schedule in ("constant", "plateau"):
        return 1.0
    raise ConfigError(f"optim.schedule: unknown schedule {optim.schedule!r}; choose cosine, constant or plateau")


def total_steps(train: TrainConfig, steps_per_epoch: int) -> int:
    """Optimizer steps of the run: from max_epochs when set, else max_steps."""
    if train.max_epochs > 0:
        return max(1, math.ceil(train.max_epochs * steps_per_epoch / train.accumulate_grad_batches))
    return train.max_steps


class _Progress:
    """A rich progress bar (rank 0 only) with loss, samples/s and time left."""

    def __init__(self, enabled: bool, total: int, start: int):
        self.bar = None
        if enabled:
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                       TimeRemainingColumn)

            self.bar = Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TextColumn("left"),
                                TimeRemainingColumn(), transient=False)
            self.task = self.bar.add_task("train", total=total, completed=start, info="")
            self.bar.start()

    def update(self, step: int, info: str | None = None) -> None:
        if self.bar is not None:
            self.bar.update(self.task, completed=step, **({"info": info} if info is not None else {}))

    def print(self, text: str) -> None:
        if self.bar is not None:
            self.bar.console.print(text)
        else:
            print(text, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


class _Writer:
    """metrics.jsonl + TensorBoard scalars, on rank 0 only."""

    def __init__(self, run_dir: Path, enabled: bool, resume_step: int):
        self.enabled = enabled
        self.tb = None
        self.path = run_dir / ckpt.METRICS
        if enabled:
            records = ckpt.read_metrics(run_dir) if resume_step > 0 else []
            kept = [r for r in records if r.get("step", 0) <= resume_step]
            ckpt.atomic_write_bytes(self.path, "".join(json.dumps(r) + "\n" for r in kept).encode())
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(run_dir), purge_step=resume_step + 1 if resume_step else None)

    def log(self, step: int, split: str, values: dict) -> None:
        if not self.enabled:
            return
        record = {"step": step, "split": split, **{k: float(v) for k, v in values.items()}}
        with open(self.path, "a") as fh:
            fh.write(json.dumps(record) + "\n")
        for key, value in values.items():
            self.tb.add_scalar(f"{split}/{key}", float(value), step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def fit(fabric, exp: Experiment, cfg: Config, run_dir: str | Path, resume: bool = False) -> dict:
    """Train `exp.model` under `cfg.optim` / `cfg.train`; returns the last evaluation metrics.

    Checkpoints (weights + config + trainer state) are written atomically every `checkpoint_interval` steps,
    at the end, and on Ctrl-C; `resume=True` continues from the run folder's last checkpoint at the same step.
    """
    run_dir = Path(run_dir)
    train = cfg.train
    if exp.manual_backward and fabric.world_size > 1:
        raise ConfigError("optim.manual_backprop=true fills .grad by hand, bypassing DDP's gradient averaging; "
                          "train it with train.devices=1")
    is_main = fabric.global_rank == 0
    if is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
    raw_model = exp.model
    optimizer = build_optimizer(cfg.optim, raw_model)
    state = {"step": 0, "elapsed": 0.0, "plateau_scale": 1.0, "best_val": math.inf, "bad_evals": 0}
    if resume:
        saved = ckpt.load_trainer_state(run_dir)
        if saved is None:
            raise ckpt.CheckpointError(f"--resume: no checkpoint to resume in {run_dir}")
        ckpt.load_weights(raw_model, run_dir / ckpt.WEIGHTS)
        optimizer.load_state_dict(saved["optimizer"])
        torch.set_rng_state(saved["torch_rng"])
        state.update(saved["loop"])
    forward_model = torch.compile(raw_model) if train.compile else raw_model
    model, optimizer = fabric.setup(forward_model, optimizer)
    batches = exp.train_batches
    max_steps = total_steps(train, batches.steps_per_epoch)
    accum = max(1, train.accumulate_grad_batches)
    rank, world = fabric.global_rank, fabric.world_size

    writer = _Writer(run_dir, is_main, state["step"])
    progress = _Progress(is_main and train.progress, max_steps, state["step"])
    metrics: dict = {}

    def save_checkpoint(step: int) -> None:
        fabric.barrier()
        if is_main:
            ckpt.save_run(run_dir, raw_model, cfg, exp.tokenizer)
            ckpt.save_trainer_state(run_dir, {
                "optimizer": optimizer.state_dict(), "torch_rng": torch.get_rng_state(),
                "loop": {**state, "step": step}})
        fabric.barrier()

    def run_evaluation(step: int) -> None:
        nonlocal metrics
        if exp.evaluate is None:
            return
        raw_model.eval()
        with torch.no_grad(), fabric.autocast():
            metrics = exp.evaluate(raw_model)
        raw_model.train()
        by_split: dict[str, dict] = {}
        for key, value in metrics.items():
            split, _, name = key.partition("/")
            by_split.setdefault(split, {})[name] = value
        for split, values in by_split.items():
            writer.log(step, split, values)
        if is_main:
            for hook in exp.hooks:
                hook(step, raw_model, writer.tb)
            progress.print(f"step {step}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
        watched = metrics.get("val/loss", metrics.get("test/loss"))
        if cfg.optim.schedule == "plateau" and watched is not None:
            if watched < state["best_val"] - 1e-4:
                state["best_val"], state["bad_evals"] = watched, 0
            else:
                state["bad_evals"] += 1
                if state["bad_evals"] > cfg.optim.patience:
                    state["plateau_scale"] *= 0.1
                    state["bad_evals"] = 0

    step = state["step"]
    start_time = time.perf_counter() - state["elapsed"]
    window_loss, window_samples, window_start = 0.0, 0, time.perf_counter()
    raw_model.train()
    try:
        while step < max_steps:
            elapsed = time.perf_counter() - start_time
            budget = train.max_minutes * 60
            progress_frac = step / max_steps
            if budget > 0:
                progress_frac = max(progress_frac, elapsed / budget)
                stop = torch.tensor(int(elapsed >= budget))
                if int(fabric.broadcast(stop, src=0)):
                    break
            lr = cfg.optim.lr * lr_factor(cfg.optim, progress_frac, step) * state["plateau_scale"]
            for group in optimizer.param_groups:
                group["lr"] = lr
            extras: dict = {}
            for micro in range(accum):
                batch = batches.batch(step * accum + micro, rank, world)
                batch = tuple(fabric.to_device(t) for t in batch)
                with fabric.no_backward_sync(model, enabled=micro < accum - 1):
                    loss, extras = exp.loss_fn(model, batch)
                    if not exp.manual_backward:
                        fabric.backward(loss / accum)
                window_loss += loss.item() / accum
                window_samples += exp.samples_per_batch or len(batch[0])
            if cfg.optim.grad_clip > 0:
                fabric.clip_gradients(model, optimizer, max_norm=cfg.optim.grad_clip, error_if_nonfinite=False)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            state["elapsed"] = time.perf_counter() - start_time
            if step % train.log_interval == 0 or step == max_steps:
                seconds = time.perf_counter() - window_start
                n_steps = train.log_interval if step % train.log_interval == 0 else step % train.log_interval
                values = {"loss": window_loss / n_steps, "lr": lr,
                          "samples_per_sec": window_samples * world / max(seconds, 1e-9),
                          **{k: float(v) for k, v in extras.items()}}
                writer.log(step, "train", values)
                progress.update(step, f"loss {values['loss']:.4f} | {values['samples_per_sec']:.0f} samples/s")
                window_loss, window_samples, window_start = 0.0, 0, time.perf_counter()
            else:
                progress.update(step)
            if train.eval_interval > 0 and step % train.eval_interval == 0 and step < max_steps:
                run_evaluation(step)
            elif is_main and train.viz_interval > 0 and step % train.viz_interval == 0 and step < max_steps:
                for hook in exp.hooks:  # figures between evaluations; hooks put the model in eval mode if they need it
                    hook(step, raw_model, writer.tb)
            if train.checkpoint_interval > 0 and step % train.checkpoint_interval == 0 and step < max_steps:
                save_checkpoint(step)
    except KeyboardInterrupt:
        progress.close()
        save_checkpoint(step)
        writer.close()
        if is_main:
            print(f"interrupted at step {step}: checkpoint saved in {run_dir} (continue with --resume)", flush=True)
        raise
    run_evaluation(step)
    save_checkpoint(step)
    progress.close()
    writer.close()
    return {"step": step, "train_seconds": state["elapsed"], **metrics}
