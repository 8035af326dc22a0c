"""The optimizer, the learning-rate schedule and the length of a run, from the config (the training loop's
arithmetic, apart from the loop)."""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from .config import ConfigError, OptimConfig, TrainConfig


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
