"""Boosting the LightGBM next-char model: the language task's data and evaluation, boosting rounds as steps."""

from __future__ import annotations

import torch
import torch.nn as nn

from ..config import Config
from ..experiment import Experiment
from ..models.protocol import unwrap
from . import language


def build(cfg: Config) -> Experiment:
    """Experiment whose steps are boosting rounds: the language task's data and evaluation, no gradients."""
    exp = language.build(cfg)
    model = exp.model
    model.set_training_data(exp.train_batches.tokens)

    def loss_fn(wrapped, batch):
        return torch.tensor(unwrap(wrapped).boost()), {}

    exp.loss_fn, exp.manual_backward = loss_fn, True
    exp.samples_per_batch = model.train_size * model.rounds_per_step
    return exp


def evaluate_run(model: nn.Module, cfg: Config, run_dir, split: str = "test", tokenizer=None) -> dict:
    """Val / test loss, bits per char and perplexity, as for every language model."""
    return language.evaluate_run(model, cfg, run_dir, split, tokenizer)
