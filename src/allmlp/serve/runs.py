"""The run folders under a served RUNS_DIR: discovery, safe name resolution, and a summary of each for the runs page."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import torch

from ..checkpoint import CONFIG, METRICS, TRAINER_STATE, WEIGHTS, read_metrics
from ..configure import load_config
from ..models import count_parameters, create_model, model_info
from ..report import final_metrics
from ..rundir import lock_pid
from ..viz import samples_per_step

MAX_DEPTH = 8  # run folders nested deeper than this under RUNS_DIR are not listed


class RunNotFound(LookupError):
    """No run folder of that name under RUNS_DIR (or a name that tries to leave it)."""


def is_run_folder(path: Path) -> bool:
    """A folder that `allmlp train` wrote: config.yaml plus weights or a trainer state, or config.yaml and a
    training holding the folder (a run in its first checkpoint interval, listed from its first step)."""
    if not (path / CONFIG).is_file():
        return False
    return (path / WEIGHTS).is_file() or (path / TRAINER_STATE).is_file() or lock_held(path)


def discover_runs(root: Path) -> list[str]:
    """Names (paths relative to `root`, with /) of every run folder under `root`, symlinks not followed."""
    names = []
    for folder, subfolders, _ in os.walk(root, followlinks=False):
        relative = Path(folder).relative_to(root)
        subfolders[:] = sorted(s for s in subfolders if not s.startswith(".")) if len(relative.parts) < MAX_DEPTH else []
        if relative.parts and is_run_folder(Path(folder)):
            names.append(relative.as_posix())
    return sorted(names)


def resolve_run(root: Path, name: str) -> Path:
    """The run folder `name` under `root` (resolved), or RunNotFound for any name that is not one of its runs:
    empty, absolute, `..`/`.` parts, backslashes, NUL, too long for the file system, or a symlink that leads out of
    `root`."""
    parts = name.split("/")
    unsafe = not name or name.startswith("/") or "\\" in name or "\x00" in name or \
        any(part in ("", ".", "..") for part in parts)
    if not unsafe:
        try:  # a name too long for the file system (ENAMETOOLONG) or a part that is a file is not a run either
            path = root.joinpath(*parts).resolve()
            if path.is_relative_to(root) and path != root and is_run_folder(path):
                return path
        except OSError:
            pass
    raise RunNotFound(f"no run named {name!r} under the served runs folder")


def lock_held(run_dir: Path) -> bool:
    """Whether a training holds the run folder's lock now (it is still running)."""
    try:
        return lock_pid(run_dir) is not None
    except OSError:
        return False


def meta_model(cfg):
    """The run's model built on the meta device (no memory, no weights read), or None where that cannot be done."""
    try:
        with torch.device("meta"):
            return create_model(cfg.model.name, **cfg.model.args)
    except Exception:  # a model built in Python (allmlp.fit) or one that needs real tensors to be built
        return None


def time_left(cfg, records: list[dict], step: int, step_samples: int) -> float | None:
    """Seconds of training left, from the last logged speed: steps left at that speed, capped by a time budget."""
    train = [r for r in records if r.get("split") == "train" and r.get("samples_per_sec")]
    if not train or step_samples <= 0:
        return None
    seconds_per_step = step_samples / train[-1]["samples_per_sec"]
    left = (cfg.train.max_steps - step) * seconds_per_step if cfg.train.max_epochs <= 0 else None
    if cfg.train.max_minutes > 0:  # the clock is rebuilt from each logging window's speed (no timestamps logged)
        elapsed, previous = 0.0, 0
        for record in train:
            elapsed += max(0, record["step"] - previous) * step_samples / record["samples_per_sec"]
            previous = record["step"]
        budget_left = max(0.0, cfg.train.max_minutes * 60 - elapsed)
        left = budget_left if left is None else min(left, budget_left)
    return None if left is None else max(0.0, left)


class RunIndex:
    """Summaries of the runs under `root`, each recomputed only when one of its files changed."""

    def __init__(self, root: Path):
        self.root = root
        self._cache: dict[str, tuple[tuple, dict]] = {}
        self._lock = threading.Lock()

    def names(self) -> list[str]:
        """Every run folder's name, found afresh (runs appear while the server runs)."""
        return discover_runs(self.root)

    def summary(self, name: str) -> dict:
        """Model, task, parameters, final metrics, steps, last change and live status of run `name`."""
        run_dir = resolve_run(self.root, name)
        signature = tuple(_stamp(run_dir / f) for f in (CONFIG, WEIGHTS, TRAINER_STATE, METRICS))
        with self._lock:
            cached = self._cache.get(name)
        if cached is None or cached[0] != signature:
            cached = (signature, self._summarise(name, run_dir, signature))
            with self._lock:
                self._cache[name] = cached
        running = lock_held(run_dir)
        status = dict(cached[1]["status"], running=running)
        if not running:
            status.pop("time_left_s", None)
        return {**cached[1], "status": status}

    def _summarise(self, name: str, run_dir: Path, signature: tuple) -> dict:
        cfg = load_config(run_dir / CONFIG)
        try:
            records = read_metrics(run_dir)
        except ValueError as err:  # a damaged metrics.jsonl must not hide the run
            records, problem = [], str(err)
        else:
            problem = None
        registered = "." not in cfg.model.name
        task = model_info(cfg.model.name)["task"] if registered else "python"
        model = meta_model(cfg) if registered else None
        metrics = final_metrics(records)
        step = int(metrics.pop("step"))
        last_train = next((r for r in reversed(records) if r.get("split") == "train"), {})
        return {
            "name": name, "model": cfg.model.name, "task": task, "preset": cfg.preset or None,
            "params": None if model is None else count_parameters(model),
            "metrics": metrics, "step": step,
            "max_steps": cfg.train.max_steps if cfg.train.max_epochs <= 0 else None,
            "has_weights": (run_dir / WEIGHTS).is_file(),
            "last_change": max(s[0] for s in signature if s is not None),
            "can_chat": task == "text" and (run_dir / "tokenizer.json").is_file(),
            "can_classify": task == "image" and (run_dir / WEIGHTS).is_file(),
            "status": {"step": step, "loss": last_train.get("loss"),
                       "time_left_s": time_left(cfg, records, step, samples_per_step(cfg, model))},
            "problem": problem,
        }


def _stamp(path: Path) -> tuple[float, int] | None:
    """(modification time, size) of a file, None when it is absent."""
    try:
        info = path.stat()
    except OSError:
        return None
    return info.st_mtime, info.st_size

