"""Bengio et al. 2003 character MLP (makemore part 2/3): n chars -> embeddings -> tanh hidden layer -> logits.

All three implementations of this network (this module, and the raw-tensor and hand-written-layer versions in
`scratch.py`) draw their initial weights from `init_weights`, so one seed gives all three the same start, and
they share the same weight names ("canonical weights") so `scratch.copy_weights` can move weights between them.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import register_model

BN_EPS = 1e-5
BN_MOMENTUM = 0.1  # as torch.nn.BatchNorm1d and makemore part 3


def init_weights(vocab_size: int, context_length: int, embedding_dim: int, hidden_dim: int,
                 batch_norm: bool, direct: bool, init: str) -> dict[str, torch.Tensor]:
    """Fresh weights under the canonical names, drawn from torch's global RNG in a fixed order.

    init="kaiming": makemore part 3 (tanh gain 5/3 over sqrt(fan_in), small output layer, so the first loss is
    near log(V)); init="randn": plain standard normals as in makemore part 2 (a far worse start, as the seed shows).
    """
    for name, value in (("vocab_size", vocab_size), ("context_length", context_length),
                        ("embedding_dim", embedding_dim), ("hidden_dim", hidden_dim)):
        if value < 1:
            raise ValueError(f"bengio: {name} must be >= 1, got {value}")
    if init not in ("kaiming", "randn"):
        raise ValueError(f"bengio: init must be 'kaiming' or 'randn', got {init!r}")
    fan_in = context_length * embedding_dim
    kaiming = init == "kaiming"
    weights = {"C": torch.randn(vocab_size, embedding_dim)}
    weights["W1"] = torch.randn(fan_in, hidden_dim) * ((5 / 3) / math.sqrt(fan_in) if kaiming else 1.0)
    if batch_norm:  # a bias before batch norm is subtracted away again, so makemore drops it
        weights["bn_gain"] = torch.ones(hidden_dim)
        weights["bn_bias"] = torch.zeros(hidden_dim)
        weights["bn_mean"] = torch.zeros(hidden_dim)
        weights["bn_var"] = torch.ones(hidden_dim)
    else:
        weights["b1"] = torch.randn(hidden_dim) * (0.01 if kaiming else 1.0)
    weights["W2"] = torch.randn(hidden_dim, vocab_size) * (0.01 if kaiming else 1.0)
    weights["b2"] = torch.randn(vocab_size) * (0.0 if kaiming else 1.0)
    if direct:  # Bengio's optional input -> output connections; zero so they start switched off
        weights["W_direct"] = torch.zeros(fan_in, vocab_size)
    return weights


BUFFERS = ("bn_mean", "bn_var")  # batch-norm running statistics: state, not trained


def hold_weights(module: nn.Module, weights: dict[str, torch.Tensor]) -> None:
    """Register `init_weights`' tensors on `module` by name: parameters, and BUFFERS as buffers."""
    for name, tensor in weights.items():
        if name in BUFFERS:
            module.register_buffer(name, tensor)
        else:
            module.register_parameter(name, nn.Parameter(tensor))


class BengioMLP(nn.Module):
    """The Bengio MLP as an nn.Module holding nn.Parameters; batch norm and linear maps use torch's own kernels."""

    lm_kind = "window"

    def __init__(self, vocab_size: int = 27, context_length: int = 3, embedding_dim: int = 10,
                 hidden_dim: int = 200, batch_norm: bool = False, direct: bool = False, init: str = "kaiming"):
        super().__init__()
        self.vocab_size, self.context_length = vocab_size, context_length
        self.batch_norm, self.direct = batch_norm, direct
        hold_weights(self, init_weights(vocab_size, context_length, embedding_dim, hidden_dim, batch_norm, direct,
                                        init))

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """Logits [B, V] for the char after each window idx [B, T]."""
        check_window(idx, self.context_length)
        B = idx.shape[0]
        emb = F.embedding(idx, self.C).view(B, -1)  # (B, T*D)
        h = emb @ self.W1  # (B, H)
        if self.batch_norm:
            h = F.batch_norm(h, self.bn_mean, self.bn_var, self.bn_gain, self.bn_bias, self.training,
                             BN_MOMENTUM, BN_EPS)
        else:
            h = h + self.b1
        logits = torch.tanh(h) @ self.W2 + self.b2  # (B, V)
        if self.direct:
            logits = logits + emb @ self.W_direct
        return logits

    def named_weights(self) -> dict[str, torch.Tensor]:
        """The live parameter and buffer tensors under their canonical names."""
        return {**dict(self.named_parameters()), **dict(self.named_buffers())}

    def char_embeddings(self) -> torch.Tensor:
        """The embedding table C [V, D]."""
        return self.C.detach()


def check_window(idx: torch.Tensor, context_length: int) -> None:
    """A clear error unless idx is a [B, context_length] tensor of token ids."""
    if idx.ndim != 2 or idx.shape[1] != context_length or idx.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"bengio: expected token ids of shape [B, {context_length}], "
                         f"got {tuple(idx.shape)} {idx.dtype}")


@register_model("bengio", task="text")
def bengio(vocab_size: int = 27, context_length: int = 3, embedding_dim: int = 10, hidden_dim: int = 200,
           batch_norm: bool = False, direct: bool = False, init: str = "kaiming") -> BengioMLP:
    """Bengio et al. 2003 char MLP as an nn.Module (makemore part 2 defaults: 3 chars, 10-dim embeddings, 200 tanh)."""
    return BengioMLP(vocab_size, context_length, embedding_dim, hidden_dim, batch_norm, direct, init)
