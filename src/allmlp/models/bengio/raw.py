"""The Bengio MLP from raw tensor ops (makemore part 2): indexing, matmul and tanh, batch norm written out."""

from __future__ import annotations

import torch

from .. import register_model
from .module import CanonicalBengio
from .weights import BN_EPS, BN_MOMENTUM


def batch_norm_by_hand(h: torch.Tensor, gain, bias, running_mean, running_var, training: bool) -> torch.Tensor:
    """Batch norm written out: batch statistics (biased variance) in training, running statistics in eval."""
    if training:
        mean = h.mean(0)  # (H,)
        var = ((h - mean) ** 2).mean(0)  # (H,)
        with torch.no_grad():  # running variance is unbiased, as torch keeps it
            n = h.shape[0]
            running_mean.mul_(1 - BN_MOMENTUM).add_(BN_MOMENTUM * mean)
            running_var.mul_(1 - BN_MOMENTUM).add_(BN_MOMENTUM * var * n / (n - 1))
    else:
        mean, var = running_mean, running_var
    return gain * (h - mean) / torch.sqrt(var + BN_EPS) + bias


class RawTensorsBengio(CanonicalBengio):
    """(a) The Bengio MLP from raw tensors: weights are tensors with requires_grad, forward is indexing,
    matmul and tanh (makemore part 2); nn.Module only so the engine and checkpoints can hold it."""

    def embed(self, idx: torch.Tensor) -> torch.Tensor:
        """Rows of C for ids [B, T] by plain indexing: [B, T, D]."""
        return self.C[idx]

    def normalize(self, h: torch.Tensor) -> torch.Tensor:
        """Batch norm written out (see `batch_norm_by_hand`)."""
        return batch_norm_by_hand(h, self.bn_gain, self.bn_bias, self.bn_mean, self.bn_var, self.training)


@register_model("bengio_raw", task="text")
def bengio_raw(vocab_size: int = 27, context_length: int = 3, embedding_dim: int = 10, hidden_dim: int = 200,
               batch_norm: bool = False, direct: bool = False, init: str = "kaiming") -> RawTensorsBengio:
    """The Bengio MLP from raw tensor ops (same weights and names as `bengio`)."""
    return RawTensorsBengio(vocab_size, context_length, embedding_dim, hidden_dim, batch_norm, direct, init)
