"""The contract between tasks and the engine: what a task hands over to be trained."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn as nn

LossFn = Callable[[nn.Module, tuple], "tuple[torch.Tensor, dict]"]
Hook = Callable[[int, nn.Module, object], None]  # (step, model, SummaryWriter) -> None


@dataclass
class Experiment:
    """What a task hands the engine: a model, its loss, training batches, and optional evaluation and hooks."""

    model: nn.Module
    loss_fn: LossFn  # (model, batch) -> (scalar loss, extra scalars to log)
    train_batches: object  # data.batches.Batches
    evaluate: Callable[[nn.Module], dict] | None = None  # model -> {"val/loss": ..., ...}: during training
    # model -> val and test metrics, once at the end of a run (settings are chosen on val; default: evaluate)
    final_evaluate: Callable[[nn.Module], dict] | None = None
    hooks: list[Hook] = field(default_factory=list)  # called at evaluations (and every train.viz_interval steps) with a TensorBoard writer
    tokenizer: object = None  # saved with the checkpoint when present
    samples_per_batch: int = 0  # for throughput; default: the batch's first dimension
    manual_backward: bool = False  # loss_fn fills .grad itself (hand-written backprop); the engine skips backward
