"""The training loop: Lightning Fabric for devices, DDP and precision; the loop never knows the model."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import signal
import threading
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn

from . import checkpoint as ckpt
from . import rundir
from .config import Config, ConfigError, TrainConfig
from .ema import WeightEma
from .experiment import Experiment, Hook, LossFn  # noqa: F401  (re-exported: the engine's public contract)
from .files import atomic_write_bytes
from .machine import torch_threads
from .optim import build_optimizer, lr_factor, total_steps  # noqa: F401  (re-exported: tests and benchmarks)
from .precision import settle

def make_fabric(train: TrainConfig):
    """A Fabric for the configured accelerator, devices, strategy and precision (fp16 on CPU is an error)."""
    from lightning.fabric import Fabric

    # After the import: importing lightning.fabric sets its logger to INFO, and every DDP rank would print.
    # (and the DDP banner goes through lightning's rank-zero logger, which lightning.pytorch's import redirects)
    for name in ("lightning.fabric", "lightning.fabric.utilities.seed", "lightning.pytorch.utilities.rank_zero"):
        logging.getLogger(name).setLevel(logging.WARNING)

    accelerator = train.accelerator
    if accelerator == "auto":
        accelerator = "cuda" if torch.cuda.is_available() else "cpu"
    precision, key = train.precision, "train.precision"
    if precision == "auto":  # decided once the model exists (precision.settle); until then what it chose before
        precision, key = train.precision_chosen or "32-true", "train.precision_chosen"
    if accelerator == "cpu" and precision.startswith("16"):
        raise ConfigError(f"{key}={precision} needs a GPU; on CPU use train.precision=auto, 32-true or bf16-mixed")
    torch.set_num_threads(torch_threads(train.threads, train.devices)[0])
    return Fabric(accelerator=accelerator, devices=train.devices, strategy=train.strategy,
                  num_nodes=train.num_nodes, precision=precision)


def shutdown(fabric) -> None:
    """Wait for every process, then tear the process group down, so that no DDP worker hangs at exit."""
    import torch.distributed as dist

    if fabric.world_size > 1 and dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


class _Progress:
    """A rich progress bar (rank 0 only) with loss and samples/s; under a time budget it follows the clock."""

    def __init__(self, enabled: bool, total_steps: int, start_step: int, budget_seconds: float, elapsed: float):
        self.bar = None
        self.budget = budget_seconds
        if enabled:
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                       TimeRemainingColumn)

            done = TextColumn("{task.fields[steps]}") if budget_seconds > 0 else MofNCompleteColumn()
            self.bar = Progress(TextColumn("[bold]train"), BarColumn(), done, TextColumn("{task.fields[info]}"),
                                TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn(), transient=False)
            total, completed = (budget_seconds, elapsed) if budget_seconds > 0 else (total_steps, start_step)
            self.task = self.bar.add_task("train", total=total, completed=completed, info="",
                                          steps=f"step {start_step}")
            self.bar.start()

    def update(self, step: int, elapsed: float, info: str | None = None) -> None:
        """Show `step` (and, under a budget, `elapsed` seconds of it)."""
        if self.bar is not None:
            fields = {"info": info} if info is not None else {}
            completed = min(elapsed, self.budget) if self.budget > 0 else step
            self.bar.update(self.task, completed=completed, steps=f"step {step}", **fields)

    def print(self, text: str) -> None:
        """A line above the bar (or on stdout without one)."""
        if self.bar is not None:
            self.bar.console.print(text)
        else:
            print(text, flush=True)

    def close(self) -> None:
        """Stop drawing the bar."""
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


class _StopRequest:
    """Ctrl-C (SIGINT) or SIGTERM asks the loop to stop at the next step boundary; a second Ctrl-C stops at once.

    Stopping between steps is what makes the saved checkpoint exact: no step is half applied and the RNG state
    saved is the one the next step would start from.
    """

    def __init__(self):
        self.requested = False
        self._previous: dict = {}

    def __enter__(self) -> "_StopRequest":
        if threading.current_thread() is threading.main_thread():  # signal handlers can only be set there
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


class _Writer:
    """metrics.jsonl + TensorBoard scalars, on rank 0 only."""

    def __init__(self, run_dir: Path, enabled: bool, resume_step: int):
        self.enabled = enabled
        self.tb = None
        self.path = run_dir / ckpt.METRICS
        if enabled:
            records = ckpt.read_metrics(run_dir) if resume_step > 0 else []
            kept = [r for r in records if r.get("step", 0) <= resume_step]
            atomic_write_bytes(self.path, "".join(json.dumps(r) + "\n" for r in kept).encode())
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
        """Flush and close TensorBoard (safe to call twice)."""
        if self.tb is not None:
            self.tb.close()
            self.tb = None


def _load_resume_state(run_dir: Path, raw_model: nn.Module, optimizer, cfg: Config) -> tuple[dict, dict | None]:
    """Weights, optimizer and RNG of the run folder's last checkpoint, loaded in place; returns the loop state and
    the averaged weights (None when the run kept no average)."""
    saved = ckpt.load_trainer_state(run_dir)
    if saved is None:
        raise ckpt.CheckpointError(f"--resume: no checkpoint to resume in {run_dir}")
    path = run_dir / ckpt.TRAINER_STATE
    try:
        loop, optimizer_state = dict(saved["loop"]), saved["optimizer"]
        rng = saved.get("rng", {"torch": saved.get("torch_rng")})
    except (KeyError, TypeError, AttributeError):
        raise ckpt.CheckpointError(f"{path}: corrupt trainer state (missing loop, optimizer or RNG)") from None
    trained_with = loop.pop("optimizer_name", cfg.optim.name)
    if trained_with != cfg.optim.name:
        raise ConfigError(f"--resume: {run_dir} was trained with optim.name={trained_with}; its optimizer state "
                          f"cannot continue as optim.name={cfg.optim.name}")
    if "model" in saved:  # the weights saved with this very state (model.safetensors may be one checkpoint newer)
        ckpt.load_state_into(raw_model, saved["model"], path)
    else:
        ckpt.load_weights(raw_model, run_dir / ckpt.WEIGHTS)
    try:
        optimizer.load_state_dict(optimizer_state)
        torch.set_rng_state(rng["torch"])
        if rng.get("cuda") and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
    except (ValueError, KeyError, TypeError, RuntimeError) as err:
        raise ckpt.CheckpointError(f"{path}: does not fit this run's optimizer or RNG ({err})") from None
    return loop, saved.get("ema")


def fit(fabric, exp: Experiment, cfg: Config, run_dir: str | Path, resume: bool = False) -> dict:
    """Train `exp.model` under `cfg.optim` / `cfg.train`; returns the last evaluation metrics.

    Evaluations during training use `exp.evaluate` (val); the one at the end of a completed run uses
    `exp.final_evaluate` (val and test), so the test split is seen once, after every choice was made on val.

    A checkpoint (weights + config + trainer state, one atomic file for resuming) is written every
    `checkpoint_interval` steps, at the end, and when Ctrl-C or SIGTERM stops the run between two steps
    (`"interrupted": True` in the result). `resume=True` continues from the last checkpoint, bitwise as if never
    stopped.
    """
    run_dir = Path(run_dir)
    train = cfg.train
    if exp.manual_backward and fabric.world_size > 1:
        raise ConfigError("optim.manual_backprop=true fills .grad by hand, bypassing DDP's gradient averaging; "
                          "train it with train.devices=1")
    is_main = fabric.global_rank == 0
    if is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
    settle(fabric, exp, cfg)  # before setup: the model is wrapped for the precision it trains in
    raw_model = exp.model
    optimizer = build_optimizer(cfg.optim, raw_model)
    state = {"step": 0, "elapsed": 0.0, "plateau_scale": 1.0, "best_val": math.inf, "bad_evals": 0}
    saved_ema = None
    if resume:
        loop, saved_ema = _load_resume_state(run_dir, raw_model, optimizer, cfg)
        state.update(loop)
    forward_model = torch.compile(raw_model) if train.compile else raw_model
    model, optimizer = fabric.setup(forward_model, optimizer)
    ema = WeightEma(raw_model, train.ema_decay) if train.ema_decay > 0 else None  # on the model's device
    if ema is not None and saved_ema is not None:
        ckpt.load_state_into(ema.module, saved_ema, run_dir / ckpt.TRAINER_STATE)
    batches = exp.train_batches
    max_steps = total_steps(train, batches.steps_per_epoch)
    accum = max(1, train.accumulate_grad_batches)
    rank, world = fabric.global_rank, fabric.world_size
    budget = train.max_minutes * 60

    writer = _Writer(run_dir, is_main, state["step"])
    if state["step"] == 0:  # a fresh run (a resumed one keeps its first records)
        if is_main:  # the config from the start, so `allmlp serve` lists the training before its first checkpoint
            ckpt.save_config(run_dir, cfg)
        ratio = {"bf16_over_fp32": train.precision_ratio} if train.precision_ratio > 0 else {}
        writer.log(0, "setup", {"threads": torch.get_num_threads(), "processes": world, **ratio})
    progress = _Progress(is_main and train.progress, max_steps, state["step"], budget, state["elapsed"])
    metrics: dict = {}

    def save_checkpoint(step: int) -> None:
        fabric.barrier()
        if is_main:
            ckpt.save_run(run_dir, raw_model, cfg, exp.tokenizer)
            rng = {"torch": torch.get_rng_state()}
            if torch.cuda.is_available():
                rng["cuda"] = torch.cuda.get_rng_state_all()
            extra = {}
            if ema is not None:
                ckpt.save_weights(ema.module, run_dir / ckpt.EMA_WEIGHTS)
                extra["ema"] = ckpt.state_dict_for_saving(ema.module)
            ckpt.save_trainer_state(run_dir, {
                "model": ckpt.state_dict_for_saving(raw_model), "optimizer": optimizer.state_dict(), "rng": rng,
                "loop": {**state, "step": step, "optimizer_name": cfg.optim.name}, **extra})
        fabric.barrier()

    def run_evaluation(step: int, final: bool = False) -> None:
        nonlocal metrics
        evaluate = (exp.final_evaluate or exp.evaluate) if final else exp.evaluate
        if evaluate is None:
            return
        raw_model.eval()
        with torch.no_grad(), fabric.autocast():
            metrics = evaluate(raw_model)
            if ema is not None:  # the averaged weights' "val/acc" is logged as "val_ema/acc"
                for key, value in evaluate(ema.module).items():
                    split, _, name = key.partition("/")
                    metrics[f"{split}_ema/{name}"] = value
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
            if metrics:
                progress.print(f"step {step}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
        watched = metrics.get("val/loss")  # never the test split: it is seen once, at the end
        if cfg.optim.schedule == "plateau" and watched is not None:
            if watched < state["best_val"] - 1e-4:
                state["best_val"], state["bad_evals"] = watched, 0
            else:
                state["bad_evals"] += 1
                if state["bad_evals"] > cfg.optim.patience:
                    state["plateau_scale"] *= 0.1
                    state["bad_evals"] = 0

    def should_stop(stop: _StopRequest, elapsed: float) -> tuple[bool, bool]:
        """(interrupted, out of time), decided by rank 0 for every process."""
        flags = torch.tensor([int(stop.requested), int(budget > 0 and elapsed >= budget)])
        if world > 1:
            flags = fabric.broadcast(flags, src=0)
        return bool(flags[0]), bool(flags[1])

    step = state["step"]
    start_time = time.perf_counter() - state["elapsed"]
    window_loss, window_samples, window_start = 0.0, 0, time.perf_counter()
    interrupted = False
    raw_model.train()
    with _StopRequest() as stop, _closing(progress, writer):
        while step < max_steps:
            elapsed = time.perf_counter() - start_time
            interrupted, out_of_time = should_stop(stop, elapsed)
            if interrupted or out_of_time:
                break
            progress_frac = step / max_steps
            if budget > 0:
                progress_frac = max(progress_frac, elapsed / budget)
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
            if ema is not None:
                ema.update(raw_model)
            step += 1
            state["elapsed"] = time.perf_counter() - start_time
            info = None
            if step % train.log_interval == 0 or step == max_steps:
                seconds = time.perf_counter() - window_start
                n_steps = train.log_interval if step % train.log_interval == 0 else step % train.log_interval
                values = {"loss": window_loss / n_steps, "lr": lr,
                          "samples_per_sec": window_samples * world / max(seconds, 1e-9),
                          **{k: float(v) for k, v in extras.items()}}
                writer.log(step, "train", values)
                info = f"loss {values['loss']:.4f} | {values['samples_per_sec']:.0f} samples/s"
                window_loss, window_samples, window_start = 0.0, 0, time.perf_counter()
            progress.update(step, state["elapsed"], info)
            if train.eval_interval > 0 and step % train.eval_interval == 0 and step < max_steps:
                run_evaluation(step)
            elif is_main and train.viz_interval > 0 and step % train.viz_interval == 0 and step < max_steps:
                for hook in exp.hooks:  # figures between evaluations; hooks put the model in eval mode if they need it
                    hook(step, raw_model, writer.tb)
            if train.checkpoint_interval > 0 and step % train.checkpoint_interval == 0 and step < max_steps:
                save_checkpoint(step)
        if interrupted:
            progress.close()
            save_checkpoint(step)
            if is_main:
                print(f"interrupted at step {step}: checkpoint saved in {run_dir} (continue with --resume)",
                      flush=True)
            return {"step": step, "train_seconds": state["elapsed"], "interrupted": True, **metrics}
        run_evaluation(step, final=True)
        save_checkpoint(step)
    return {"step": step, "train_seconds": state["elapsed"], "interrupted": False, **metrics}


@contextlib.contextmanager
def _closing(progress: _Progress, writer: _Writer):
    """Close the progress bar and the metric writers however the loop ends (a second Ctrl-C included)."""
    try:
        yield
    finally:
        progress.close()
        writer.close()


class PeerFailed(RuntimeError):
    """Raised on the other DDP ranks when rank 0 failed: rank 0 reports the error, they stop quietly."""


def _on_rank_zero_first(fabric, action: Callable[[], object], then_others: bool = True) -> object:
    """`action()` on rank 0, then (`then_others`) on the other ranks; when rank 0 fails, every rank stops with it
    (the others quietly, so that one copy of the error is shown)."""
    error: BaseException | None = None
    result = None
    if fabric.global_rank == 0:
        try:
            result = action()
        except Exception as err:  # re-raised below, after the other ranks have been told
            error = err
    if fabric.world_size > 1:
        failed = fabric.broadcast(error is not None, src=0)
        if failed and fabric.global_rank > 0:
            raise PeerFailed("rank 0 stopped with an error")
    if error is not None:
        raise error
    return action() if fabric.global_rank > 0 and then_others else result


def default_run_dir(cfg: Config, suffix: str = "") -> Path:
    """Where a run goes when no folder is named: train.out_dir / (train.run_name, else the preset's name + suffix)."""
    return Path(cfg.train.out_dir) / (cfg.train.run_name or f"{Path(cfg.preset).stem or cfg.model.name}{suffix}")


def run(cfg: Config, run_dir: str | Path | None = None, resume: bool = False, reuse: bool | None = None,
        hooks: tuple[Hook, ...] | list[Hook] = (), prepare: Callable[[Experiment, Path, object], object] | None = None,
        build: Callable[[Config], Experiment] | None = None) -> dict:
    """One training from a config: processes, run folder, seed, experiment (rank 0 first), fit, shutdown. Returns
    fit's result with "run_dir" and "rank" (this process's global rank: 0 prints, the others stay quiet).

    The run folder (default: `default_run_dir(cfg)`) is locked for the whole training (a second training on it
    fails at once). With `reuse` false (default unless resuming) it is a base name and the first free of
    `run_dir`, `run_dir-2`, ... is taken; a folder made here is removed again if the run is rejected before its
    first step. `build(cfg)` makes the experiment (default: the config's task); `hooks` are added to its
    evaluation hooks; `prepare(experiment, run_dir, fabric)` runs on every rank before training (load weights,
    add hooks, print a header).
    """
    if build is None:
        from .tasks import build_experiment as build

    fabric = make_fabric(cfg.train)
    fabric.launch()
    reuse = resume if reuse is None else reuse
    target = default_run_dir(cfg) if run_dir is None else run_dir
    folder = _on_rank_zero_first(fabric, lambda: rundir.claim(target, reuse=reuse), then_others=False)
    path = Path(fabric.broadcast(str(folder.path) if folder is not None else "", src=0))
    try:
        fabric.seed_everything(cfg.train.seed, verbose=False)
        # rank 0 downloads and caches the data first; the other ranks then read the cache
        exp = _on_rank_zero_first(fabric, lambda: build(cfg))
        exp.hooks.extend(hooks)
        if prepare is not None:
            prepare(exp, path, fabric)
        result = fit(fabric, exp, cfg, path, resume=resume)
    except BaseException:
        if folder is not None and folder.created and not rundir.has_progress(folder.path):
            folder.discard()
        raise
    finally:
        if folder is not None:
            folder.release()
    shutdown(fabric)
    return {**result, "run_dir": str(path), "rank": fabric.global_rank}
