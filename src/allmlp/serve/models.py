"""A small LRU cache of loaded runs, so a model is read from disk once and shared by every request."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch.nn as nn

from ..checkpoint import WEIGHTS, load_run
from ..config import Config


@dataclass
class LoadedRun:
    """A run's model (eval mode), config and tokenizer (None for image runs)."""

    model: nn.Module
    cfg: Config
    tokenizer: object | None


class ModelCache:
    """Up to `capacity` loaded runs, least recently used dropped first; a run whose weights file changed (a training
    still writing checkpoints) is loaded again."""

    def __init__(self, capacity: int = 4):
        if capacity < 1:
            raise ValueError(f"model cache capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._runs: OrderedDict[Path, tuple[float, LoadedRun]] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[Path, threading.Lock] = {}  # one lock per folder: two requests never load it twice

    def get(self, run_dir: Path) -> LoadedRun:
        """The loaded run of folder `run_dir` (a resolved path under RUNS_DIR), loading it when needed."""
        stamp = (run_dir / WEIGHTS).stat().st_mtime if (run_dir / WEIGHTS).is_file() else 0.0
        with self._lock:
            entry = self._runs.get(run_dir)
            if entry is not None and entry[0] == stamp:
                self._runs.move_to_end(run_dir)
                return entry[1]
            loading = self._loading.setdefault(run_dir, threading.Lock())
        with loading:
            with self._lock:  # another request may have loaded it while this one waited
                entry = self._runs.get(run_dir)
                if entry is not None and entry[0] == stamp:
                    return entry[1]
            model, cfg, tokenizer = load_run(run_dir)
            loaded = LoadedRun(model, cfg, tokenizer)
            with self._lock:
                self._runs[run_dir] = (stamp, loaded)
                self._runs.move_to_end(run_dir)
                while len(self._runs) > self.capacity:
                    self._runs.popitem(last=False)
            return loaded
