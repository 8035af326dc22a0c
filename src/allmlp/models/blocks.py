"""Shared building blocks: the two-layer MLP, stochastic depth and the Mixer block (token + channel mixing)."""

from __future__ import annotations

import torch
import torch.nn as nn


class Mlp(nn.Module):
    """Linear -> GELU -> (dropout) -> Linear: the MLP inside every Mixer block (gelu="tanh": JAX's approximation)."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int | None = None, dropout: float = 0.0,
                 gelu: str = "none"):
        super().__init__()
        self.fc1 = nn.Linear(in_dim, hidden_dim)
        self.act = nn.GELU(approximate=gelu)
        self.drop = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden_dim, out_dim or in_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.drop(self.act(self.fc1(x))))


class DropPath(nn.Module):
    """Stochastic depth (Huang et al. 2016): in training, drop a residual branch for a random `rate` of the samples
    and scale the kept ones by 1 / (1 - rate); the identity in eval mode or at rate 0 (which draws no random number)."""

    def __init__(self, rate: float = 0.0):
        super().__init__()
        if not 0 <= rate < 1:
            raise ValueError(f"model.drop_path_rate must be in [0, 1), got {rate}")
        self.rate = rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.rate == 0:
            return x
        keep = 1 - self.rate
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)  # (B, 1, ..., 1)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"rate={self.rate:g}"


def drop_path_rates(rate: float, depth: int) -> list[float]:
    """Per-block drop-path rates rising linearly from 0 (first block) to `rate` (last), as in DeiT and timm."""
    if not 0 <= rate < 1:
        raise ValueError(f"model.drop_path_rate must be in [0, 1), got {rate}")
    return [rate * i / max(depth - 1, 1) for i in range(depth)]


class MixerBlock(nn.Module):
    """Mixer layer of Tolstikhin et al. 2021: LN -> token-mixing MLP -> residual, LN -> channel MLP -> residual."""

    def __init__(self, num_tokens: int, hidden_dim: int, tokens_mlp_dim: int, channels_mlp_dim: int,
                 dropout: float = 0.0, norm_eps: float = 1e-5, gelu: str = "none", drop_path: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden_dim, eps=norm_eps)
        self.token_mixing = Mlp(num_tokens, tokens_mlp_dim, dropout=dropout, gelu=gelu)
        self.norm2 = nn.LayerNorm(hidden_dim, eps=norm_eps)
        self.channel_mixing = Mlp(hidden_dim, channels_mlp_dim, dropout=dropout, gelu=gelu)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, N, C) with N tokens (patches) and C channels
        y = self.norm1(x).transpose(1, 2)  # (B, C, N): the token MLP mixes along N
        x = x + self.drop_path(self.token_mixing(y).transpose(1, 2))
        return x + self.drop_path(self.channel_mixing(self.norm2(x)))
