"""Bengio et al. 2003 character MLP (makemore part 2/3): n chars -> embeddings -> tanh hidden layer -> logits."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import register_model
from .backprop import manual_loss_and_grads
from .weights import BN_EPS, BN_MOMENTUM, check_window, hold_weights, init_weights


class CanonicalBengio(nn.Module):
    """A Bengio MLP that holds the canonical weights as its own parameters and buffers (C, W1, b1 or bn_*, W2, b2,
    W_direct); subclasses say how the embedding lookup and the batch norm are computed."""

    lm_kind = "window"

    def __init__(self, vocab_size: int = 27, context_length: int = 3, embedding_dim: int = 10,
                 hidden_dim: int = 200, batch_norm: bool = False, direct: bool = False, init: str = "kaiming"):
        super().__init__()
        self.vocab_size, self.context_length = vocab_size, context_length
        self.batch_norm, self.direct = batch_norm, direct
        hold_weights(self, init_weights(vocab_size, context_length, embedding_dim, hidden_dim, batch_norm, direct,
                                        init))

    def embed(self, idx: torch.Tensor) -> torch.Tensor:
        """Rows of C for ids [B, T]: [B, T, D]."""
        raise NotImplementedError

    def normalize(self, h: torch.Tensor) -> torch.Tensor:
        """Batch norm of hidden pre-activations [B, H] (batch statistics in training, running ones in eval)."""
        raise NotImplementedError

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """Logits [B, V] for the char after each window idx [B, T]."""
        check_window(idx, self.context_length)
        emb = self.embed(idx).view(idx.shape[0], -1)  # (B, T*D)
        h = emb @ self.W1  # (B, H)
        h = self.normalize(h) if self.batch_norm else h + self.b1
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

    def loss_and_grads(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of windows x [B, T] -> next chars y [B] with every .grad filled by hand."""
        return manual_loss_and_grads(self, x, y)


class BengioMLP(CanonicalBengio):
    """The Bengio MLP as an nn.Module holding nn.Parameters; batch norm and linear maps use torch's own kernels."""

    def embed(self, idx: torch.Tensor) -> torch.Tensor:
        """Rows of C for ids [B, T]: [B, T, D]."""
        return F.embedding(idx, self.C)

    def normalize(self, h: torch.Tensor) -> torch.Tensor:
        """torch's batch norm with the canonical gain, bias and running statistics."""
        return F.batch_norm(h, self.bn_mean, self.bn_var, self.bn_gain, self.bn_bias, self.training, BN_MOMENTUM,
                            BN_EPS)


@register_model("bengio", task="text")
def bengio(vocab_size: int = 27, context_length: int = 3, embedding_dim: int = 10, hidden_dim: int = 200,
           batch_norm: bool = False, direct: bool = False, init: str = "kaiming") -> BengioMLP:
    """Bengio et al. 2003 char MLP as an nn.Module (makemore part 2 defaults: 3 chars, 10-dim embeddings, 200 tanh)."""
    return BengioMLP(vocab_size, context_length, embedding_dim, hidden_dim, batch_norm, direct, init)
