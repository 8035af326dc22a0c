"""LightGBM next-character model, wrapped as a window language model so generate, chat and eval take it as is.

Features are the `context_length` previous character ids (categorical), the target the next id (multiclass).
Training runs through the same engine: every optimizer step adds `rounds_per_step` boosting rounds (no
gradients), evaluations report val loss / bits per char, and the run folder holds the booster as `model.txt`
(the task: tasks/gbm.py).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from ..files import atomic_write_bytes
from . import register_model

BOOSTER_FILE = "model.txt"


def _lightgbm():
    try:
        import lightgbm
    except ImportError:
        raise ImportError("model gbm needs the lightgbm package: pip install 'allmlp[gbm]'") from None
    return lightgbm


def windows(tokens: torch.Tensor, context_length: int, limit: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """All (context, next char) pairs of a token stream, evenly thinned to at most `limit`: (N, T), (N,)."""
    starts = torch.arange(0, len(tokens) - context_length)
    if 0 < limit < len(starts):
        starts = starts[torch.linspace(0, len(starts) - 1, limit).long()]
    index = starts[:, None] + torch.arange(context_length + 1)  # (N, T + 1)
    rows = tokens.long()[index].numpy()
    return rows[:, :-1].astype(np.int32), rows[:, -1].astype(np.int32)


class GBMLanguageModel(nn.Module):
    """A LightGBM multiclass booster behind the window-LM protocol: forward(idx [B, T]) -> log-probabilities [B, V]."""

    lm_kind = "window"

    def __init__(self, vocab_size: int, context_length: int, num_leaves: int, learning_rate: float,
                 rounds_per_step: int, min_data_in_leaf: int, max_train_windows: int, num_threads: int):
        super().__init__()
        self.vocab_size, self.context_length = vocab_size, context_length
        self.rounds_per_step, self.max_train_windows = rounds_per_step, max_train_windows
        self.params = {"objective": "multiclass", "num_class": vocab_size, "num_leaves": num_leaves,
                       "learning_rate": learning_rate, "min_data_in_leaf": min_data_in_leaf, "verbosity": -1,
                       "max_cat_to_onehot": 4, "deterministic": True, "seed": 0,
                       **({"num_threads": num_threads} if num_threads > 0 else {})}
        # Holds no weights; generation and evaluation ask parameters() for the device.
        self.device_anchor = nn.Parameter(torch.zeros(0), requires_grad=False)
        self.booster = None  # the trained trees (what forward uses and model.txt holds)
        self._trainer = None  # the booster being trained, with its training data
        self.train_size = 0

    def set_training_data(self, tokens: torch.Tensor) -> None:
        """The windows of the training stream that boosting rounds fit, from no trees (--resume starts over)."""
        lgb = _lightgbm()
        x, y = windows(tokens, self.context_length, self.max_train_windows)
        self.train_size = len(y)
        train_set = lgb.Dataset(x, y, categorical_feature=list(range(self.context_length)),
                                params={"verbosity": -1, "max_bin": 255})
        self._trainer = lgb.Booster(self.params, train_set)

    def boost(self) -> float:
        """Add `rounds_per_step` boosting rounds; returns the training log loss (nats)."""
        if self._trainer is None:
            raise RuntimeError("gbm: call set_training_data before boosting")
        for _ in range(self.rounds_per_step):
            self._trainer.update()  # one round, incremental (lgb.train with init_model would re-score all rows)
        self.booster = self._trainer
        return float(self._trainer.eval_train()[0][2])

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """(B, T) ids -> (B, V) log-probabilities of the next char (uniform before the first round)."""
        if idx.shape[-1] != self.context_length:
            raise ValueError(f"expected {self.context_length} context characters, got {idx.shape[-1]}")
        if self.booster is None:
            return torch.full((len(idx), self.vocab_size), -math.log(self.vocab_size), device=idx.device)
        probs = self.booster.predict(idx.cpu().numpy().astype(np.int32)).reshape(len(idx), self.vocab_size)
        return torch.from_numpy(np.log(np.clip(probs, 1e-12, 1.0))).float().to(idx.device)

    def save_files(self, run_dir: Path) -> None:
        """Write the booster as model.txt (atomically) next to the run's other files."""
        if self.booster is not None:
            atomic_write_bytes(Path(run_dir) / BOOSTER_FILE, self.booster.model_to_string().encode())

    def load_files(self, run_dir: Path) -> None:
        """Read model.txt of a run folder back into the booster."""
        path = Path(run_dir) / BOOSTER_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{run_dir} holds no LightGBM booster ({BOOSTER_FILE} is missing)")
        self.booster = _lightgbm().Booster(model_str=path.read_text())


@register_model("gbm", task="gbm")
def gbm(vocab_size: int = 65, context_length: int = 16, num_leaves: int = 31, learning_rate: float = 0.1,
        rounds_per_step: int = 1, min_data_in_leaf: int = 20, max_train_windows: int = 200_000,
        num_threads: int = 0) -> GBMLanguageModel:
    """LightGBM next-char model on the previous `context_length` char ids (one boosting round per step)."""
    return GBMLanguageModel(vocab_size, context_length, num_leaves, learning_rate, rounds_per_step,
                            min_data_in_leaf, max_train_windows, num_threads)
