"""An exponential moving average of a model's weights (Polyak averaging), evaluated and saved beside the raw ones."""

from __future__ import annotations

import copy

import torch
import torch.nn as nn


class WeightEma:
    """`module`: a copy of the model whose floating tensors (parameters and buffers such as BatchNorm statistics)
    follow `ema = decay * ema + (1 - decay) * weights` after every optimizer step; integer buffers are copied."""

    def __init__(self, model: nn.Module, decay: float):
        if not 0 < decay < 1:
            raise ValueError(f"train.ema_decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """One step of the average towards `model`'s current weights."""
        own = self.module.state_dict()
        for name, value in model.state_dict().items():
            if value.is_floating_point():
                own[name].lerp_(value.to(own[name].dtype), 1 - self.decay)
            else:
                own[name].copy_(value)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The averaged weights, under the model's own names."""
        return self.module.state_dict()
