"""Character Mixers: ChatMixer (a window -> the next char), the causal Mixer LM and a causal gMLP (every position).

Causal token mixing multiplies by a lower-triangular T x T matrix (one per channel group, "head"), so position t
only sees positions <= t and one pass trains on all T next-char targets. The matrices start near zero: the
residual path is then the identity, which the issue measured to train far better than default-scale weights.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from . import register_model
from .blocks import MixerBlock, Mlp


def check_tokens(idx: torch.Tensor, context_length: int, exact: bool) -> None:
    """One-line error for an index tensor of the wrong shape or length."""
    if idx.ndim != 2 or (idx.shape[1] != context_length if exact else idx.shape[1] > context_length):
        want = f"(B, {context_length})" if exact else f"(B, T) with T <= {context_length}"
        raise ValueError(f"expected char ids of shape {want}, got {tuple(idx.shape)}")


class ChatMixer(nn.Module):
    """Kai Fischer's ChatMixer: char + position embeddings, Mixer blocks over the window, flattened -> next char."""

    lm_kind = "window"

    def __init__(self, vocab_size: int, context_length: int, embedding_dim: int, depth: int,
                 tokens_mlp_dim: int, channels_mlp_dim: int, dropout: float = 0.0):
        super().__init__()
        self.context_length = context_length
        self.token_embedding = nn.Embedding(vocab_size, embedding_dim)
        self.position_embedding = nn.Parameter(torch.zeros(context_length, embedding_dim))
        nn.init.normal_(self.position_embedding, std=0.02)
        self.blocks = nn.Sequential(*[MixerBlock(context_length, embedding_dim, tokens_mlp_dim, channels_mlp_dim,
                                                 dropout) for _ in range(depth)])
        self.norm = nn.LayerNorm(embedding_dim)
        self.head = nn.Linear(context_length * embedding_dim, vocab_size)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        check_tokens(idx, self.context_length, exact=True)
        x = self.token_embedding(idx) + self.position_embedding  # (B, T, C)
        x = self.norm(self.blocks(x))
        return self.head(x.flatten(1))  # (B, V)

    def token_mixing_matrices(self) -> list[torch.Tensor]:
        """Per block, the token MLP's two weights multiplied (T, T): how much each position feeds each position."""
        return [(b.token_mixing.fc2.weight @ b.token_mixing.fc1.weight).detach() for b in self.blocks]

    def char_embeddings(self) -> torch.Tensor:
        """The character embedding table (V, D)."""
        return self.token_embedding.weight.detach()


class CausalTokenMixing(nn.Module):
    """y[t] = sum_{s <= t} W[h, t, s] x[s] + b[h, t] for each channel group h: a masked, per-head T x T linear map."""

    def __init__(self, context_length: int, num_heads: int, init_std: float, init_bias: float = 0.0):
        super().__init__()
        self.num_heads = num_heads
        self.weight = nn.Parameter(torch.randn(num_heads, context_length, context_length) * init_std)
        self.bias = nn.Parameter(torch.full((num_heads, context_length, 1), init_bias))
        self.register_buffer("mask", torch.ones(context_length, context_length).tril(), persistent=False)

    def matrices(self) -> torch.Tensor:
        """The effective (heads, T, T) lower-triangular mixing weights."""
        return self.weight * self.mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        heads = x.view(B, T, self.num_heads, C // self.num_heads).transpose(1, 2)  # (B, H, T, C/H)
        weight = self.matrices()[:, :T, :T]  # shorter prompts use the top-left corner: still causal
        mixed = weight @ heads + self.bias[:, :T]  # (B, H, T, C/H)
        return mixed.transpose(1, 2).reshape(B, T, C)


class CausalMixerBlock(nn.Module):
    """LN -> causal token mixing -> residual, LN -> channel MLP -> residual."""

    def __init__(self, context_length: int, dim: int, channels_mlp_dim: int, num_heads: int, init_std: float,
                 dropout: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.token_mixing = CausalTokenMixing(context_length, num_heads, init_std)
        self.norm2 = nn.LayerNorm(dim)
        self.channel_mixing = Mlp(dim, channels_mlp_dim, dropout=dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.token_mixing(self.norm1(x)))  # (B, T, C)
        return x + self.channel_mixing(self.norm2(x))


class SpatialGatingUnit(nn.Module):
    """gMLP's gate (Liu et al. 2021): split channels, mix one half causally across positions, gate the other with it."""

    def __init__(self, context_length: int, gate_dim: int, num_heads: int, init_std: float):
        super().__init__()
        self.norm = nn.LayerNorm(gate_dim)
        # Near-zero weights and bias 1: at init the gate passes u through unchanged (u * 1).
        self.token_mixing = CausalTokenMixing(context_length, num_heads, init_std, init_bias=1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u, v = x.chunk(2, dim=-1)  # (B, T, F/2) each
        return u * self.token_mixing(self.norm(v))


class GmlpBlock(nn.Module):
    """LN -> Linear up -> GELU -> spatial gating -> Linear down -> residual."""

    def __init__(self, context_length: int, dim: int, ffn_dim: int, num_heads: int, init_std: float, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.proj_in = nn.Linear(dim, ffn_dim)
        self.act = nn.GELU()
        self.sgu = SpatialGatingUnit(context_length, ffn_dim // 2, num_heads, init_std)
        self.proj_out = nn.Linear(ffn_dim // 2, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop(self.proj_out(self.sgu(self.act(self.proj_in(self.norm(x))))))  # (B, T, C)


class CausalLM(nn.Module):
    """Char + position embeddings -> causal blocks -> LayerNorm -> logits at every position."""

    lm_kind = "causal"

    def __init__(self, vocab_size: int, context_length: int, embedding_dim: int, blocks: list[nn.Module],
                 dropout: float = 0.0):
        super().__init__()
        self.context_length = context_length
        self.token_embedding = nn.Embedding(vocab_size, embedding_dim)
        self.position_embedding = nn.Parameter(torch.randn(context_length, embedding_dim) * 0.02)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.Sequential(*blocks)
        self.norm = nn.LayerNorm(embedding_dim)
        self.head = nn.Linear(embedding_dim, vocab_size)
        nn.init.normal_(self.token_embedding.weight, std=0.02)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        check_tokens(idx, self.context_length, exact=False)
        T = idx.shape[1]
        x = self.drop(self.token_embedding(idx) + self.position_embedding[:T])  # (B, T, C)
        return self.head(self.norm(self.blocks(x)))  # (B, T, V)

    def token_mixing_matrices(self) -> list[torch.Tensor]:
        """Per block, the lower-triangular mixing weights: (T, T), or (heads, T, T) with several heads."""
        out = []
        for module in self.modules():
            if isinstance(module, CausalTokenMixing):
                weights = module.matrices().detach()
                out.append(weights[0] if module.num_heads == 1 else weights)
        return out

    def char_embeddings(self) -> torch.Tensor:
        """The character embedding table (V, D)."""
        return self.token_embedding.weight.detach()


def check_heads(width: int, num_heads: int, what: str) -> None:
    """Channel groups must divide the width evenly."""
    if num_heads < 1 or width % num_heads:
        raise ValueError(f"model.num_heads={num_heads} must divide {what} ({width})")


@register_model("chat_mixer", task="text")
def chat_mixer(vocab_size: int = 84, context_length: int = 32, embedding_dim: int = 64, depth: int = 4,
               tokens_mlp_dim: int = 64, channels_mlp_dim: int = 256, dropout: float = 0.0) -> ChatMixer:
    """ChatMixer: a Mixer over a window of `context_length` chars predicting the next one."""
    return ChatMixer(vocab_size, context_length, embedding_dim, depth, tokens_mlp_dim, channels_mlp_dim, dropout)


@register_model("causal_mixer", task="text")
def causal_mixer(vocab_size: int = 84, context_length: int = 64, embedding_dim: int = 128, depth: int = 4,
                 channels_mlp_dim: int = 512, num_heads: int = 4, token_init_std: float = 0.002,
                 dropout: float = 0.0) -> CausalLM:
    """Causal Mixer LM: lower-triangular multi-head token mixing + channel MLPs, a next-char guess at every position."""
    check_heads(embedding_dim, num_heads, "model.embedding_dim")
    blocks = [CausalMixerBlock(context_length, embedding_dim, channels_mlp_dim, num_heads, token_init_std, dropout)
              for _ in range(depth)]
    return CausalLM(vocab_size, context_length, embedding_dim, blocks, dropout)


@register_model("gmlp", task="text")
def gmlp(vocab_size: int = 84, context_length: int = 64, embedding_dim: int = 128, depth: int = 4,
         ffn_dim: int = 512, num_heads: int = 1, token_init_std: float = 0.002, dropout: float = 0.0) -> CausalLM:
    """Causal gMLP LM: blocks with a spatial gating unit whose T x T weights start near zero with bias 1."""
    check_heads(ffn_dim // 2, num_heads, "model.ffn_dim / 2")
    blocks = [GmlpBlock(context_length, embedding_dim, ffn_dim, num_heads, token_init_std, dropout)
              for _ in range(depth)]
    return CausalLM(vocab_size, context_length, embedding_dim, blocks, dropout)
