"""Character Mixers: ChatMixer (a window -> the next char), the causal Mixer LM and a causal gMLP (every position).

Causal token mixing multiplies by a lower-triangular T x T matrix (one per channel group, "head"), so position t
only sees positions <= t and one pass trains on all T next-char targets. The matrices start near zero: the
residual path is then the identity, which the issue measured to train far better than default-scale weights.
`token_mixing="toeplitz"` makes each matrix depend on the lag t - s only (models/toeplitz.py): no position embedding,
any sequence length, and generation at a constant cost per char however long the text (`CausalLM.step`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from . import register_model
from .blocks import MixerBlock, Mlp
from .toeplitz import TOEPLITZ_METHODS, ToeplitzTokenMixing, mix_cached

TOKEN_MIXINGS = ("full", "toeplitz")


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

    def step(self, x: torch.Tensor, inputs: torch.Tensor, position: int) -> torch.Tensor:
        """Output (B, C) at `position` < T for its input x (B, C); `inputs` (B, T, C) caches the inputs of the
        earlier positions (updated in place)."""
        inputs[:, position] = x
        # Slots after `position` are still zero, so row `position` needs no mask.
        return mix_cached(self.weight[:, position], inputs, self.bias[:, position])

    @property
    def cache_slots(self) -> int:
        """Positions `step` caches: one per position of the window."""
        return self.weight.shape[1]


def make_token_mixing(kind: str, context_length: int, num_heads: int, init_std: float, init_bias: float = 0.0,
                      toeplitz_method: str = "auto") -> nn.Module:
    """The causal token-mixing layer: "full" lower-triangular matrices or "toeplitz" (weights by lag only)."""
    if kind == "toeplitz":
        return ToeplitzTokenMixing(context_length, num_heads, init_std, init_bias, toeplitz_method)
    return CausalTokenMixing(context_length, num_heads, init_std, init_bias)


class CausalMixerBlock(nn.Module):
    """LN -> causal token mixing -> residual, LN -> channel MLP -> residual."""

    def __init__(self, context_length: int, dim: int, channels_mlp_dim: int, num_heads: int, init_std: float,
                 dropout: float, token_mixing: str = "full", toeplitz_method: str = "auto"):
        super().__init__()
        self.mixing_width = dim  # the width of what `step` caches per position
        self.norm1 = nn.LayerNorm(dim)
        self.token_mixing = make_token_mixing(token_mixing, context_length, num_heads, init_std,
                                              toeplitz_method=toeplitz_method)
        self.norm2 = nn.LayerNorm(dim)
        self.channel_mixing = Mlp(dim, channels_mlp_dim, dropout=dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.token_mixing(self.norm1(x)))  # (B, T, C)
        return x + self.channel_mixing(self.norm2(x))

    def step(self, x: torch.Tensor, inputs: torch.Tensor, position: int) -> torch.Tensor:
        """The block at one new position, x (B, C): only the token mixing needs the cached earlier inputs."""
        x = x + self.drop(self.token_mixing.step(self.norm1(x), inputs, position))  # (B, C)
        return x + self.channel_mixing(self.norm2(x))


class SpatialGatingUnit(nn.Module):
    """gMLP's gate (Liu et al. 2021): split channels, mix one half causally across positions, gate the other with it."""

    def __init__(self, context_length: int, gate_dim: int, num_heads: int, init_std: float,
                 token_mixing: str = "full", toeplitz_method: str = "auto"):
        super().__init__()
        self.norm = nn.LayerNorm(gate_dim)
        # Near-zero weights and bias 1: at init the gate passes u through unchanged (u * 1).
        self.token_mixing = make_token_mixing(token_mixing, context_length, num_heads, init_std, 1.0,
                                              toeplitz_method)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u, v = x.chunk(2, dim=-1)  # (B, T, F/2) each
        return u * self.token_mixing(self.norm(v))

    def step(self, x: torch.Tensor, inputs: torch.Tensor, position: int) -> torch.Tensor:
        """The gate at one new position, x (B, F): `inputs` caches the normalised gate halves of earlier ones."""
        u, v = x.chunk(2, dim=-1)  # (B, F/2) each
        return u * self.token_mixing.step(self.norm(v), inputs, position)


class GmlpBlock(nn.Module):
    """LN -> Linear up -> GELU -> spatial gating -> Linear down -> residual."""

    def __init__(self, context_length: int, dim: int, ffn_dim: int, num_heads: int, init_std: float, dropout: float,
                 token_mixing: str = "full", toeplitz_method: str = "auto"):
        super().__init__()
        self.mixing_width = ffn_dim // 2  # the width of what `step` caches per position
        self.norm = nn.LayerNorm(dim)
        self.proj_in = nn.Linear(dim, ffn_dim)
        self.act = nn.GELU()
        self.sgu = SpatialGatingUnit(context_length, ffn_dim // 2, num_heads, init_std, token_mixing, toeplitz_method)
        self.proj_out = nn.Linear(ffn_dim // 2, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop(self.proj_out(self.sgu(self.act(self.proj_in(self.norm(x))))))  # (B, T, C)

    def step(self, x: torch.Tensor, inputs: torch.Tensor, position: int) -> torch.Tensor:
        """The block at one new position, x (B, C)."""
        return x + self.drop(self.proj_out(self.sgu.step(self.act(self.proj_in(self.norm(x))), inputs, position)))


@dataclass
class StepState:
    """What `CausalLM.step` carries from one char to the next: the position of the next char, per block the
    inputs of its token mixing at earlier positions (B, slots, width), and the last T char ids (B, T)."""

    position: int
    inputs: list[torch.Tensor]
    recent_ids: torch.Tensor


class CausalLM(nn.Module):
    """Char (+ position) embeddings -> causal blocks -> LayerNorm -> logits at every position.

    Incremental generation: `state = model.init_state(batch_size)`, then `logits, state = model.step(ids, state)`
    for each next char ids (B,) gives the logits (B, V) that `model(window)[:, -1]` gives for the text so far, at
    O(T C) per block instead of O(T^2 C). Rule beyond the context: without position embeddings (Toeplitz mixing)
    the cached window slides, which equals `model(text[-receptive_field:])`, at a constant cost per char; with
    position embeddings, a char past T equals `model(text[-T:])` and costs one forward pass, since every kept
    char moves to a new position.
    """

    lm_kind = "causal"

    def __init__(self, vocab_size: int, context_length: int, embedding_dim: int, blocks: list[nn.Module],
                 dropout: float = 0.0, positional: bool = True):
        super().__init__()
        self.context_length = context_length
        self.token_embedding = nn.Embedding(vocab_size, embedding_dim)
        if positional:
            self.position_embedding = nn.Parameter(torch.randn(context_length, embedding_dim) * 0.02)
        else:
            self.register_parameter("position_embedding", None)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.Sequential(*blocks)
        self.norm = nn.LayerNorm(embedding_dim)
        self.head = nn.Linear(embedding_dim, vocab_size)
        nn.init.normal_(self.token_embedding.weight, std=0.02)

    @property
    def receptive_field(self) -> int:
        """How many trailing chars decide the next one: T, or through stacked lag windows depth * (T - 1) + 1."""
        if self.position_embedding is not None:
            return self.context_length
        return len(self.blocks) * (self.context_length - 1) + 1

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        if self.position_embedding is None:  # weights by lag only: any length
            if idx.ndim != 2:
                raise ValueError(f"expected char ids of shape (B, T), got {tuple(idx.shape)}")
            x = self.token_embedding(idx)  # (B, T, C)
        else:
            check_tokens(idx, self.context_length, exact=False)
            x = self.token_embedding(idx) + self.position_embedding[:idx.shape[1]]  # (B, T, C)
        return self.head(self.norm(self.blocks(self.drop(x))))  # (B, T, V)

    def init_state(self, batch_size: int) -> StepState:
        """An empty incremental state: no char seen yet (the next is at position 0)."""
        weight = self.token_embedding.weight
        mixers = [next(m for m in block.modules() if hasattr(m, "cache_slots")) for block in self.blocks]
        inputs = [weight.new_zeros(batch_size, mixer.cache_slots, block.mixing_width)
                  for mixer, block in zip(mixers, self.blocks)]
        recent = torch.zeros(batch_size, self.context_length, dtype=torch.long, device=weight.device)
        return StepState(0, inputs, recent)

    def step(self, idx: torch.Tensor, state: StepState) -> tuple[torch.Tensor, StepState]:
        """Logits (B, V) after one more char per sequence, ids (B,); the state is updated in place and returned."""
        T, position = self.context_length, state.position
        state.position += 1
        x = self.token_embedding(idx)  # (B, C)
        if self.position_embedding is not None:
            if position >= T:  # every kept char moves to a new position: recompute the window
                state.recent_ids = torch.cat([state.recent_ids[:, 1:], idx[:, None]], dim=1)  # (B, T)
                return self(state.recent_ids)[:, -1], state
            state.recent_ids[:, position] = idx
            x = x + self.position_embedding[position]
        x = self.drop(x)
        for block, inputs in zip(self.blocks, state.inputs):
            x = block.step(x, inputs, position)
        return self.head(self.norm(x)), state

    def token_mixing_matrices(self) -> list[torch.Tensor]:
        """Per block, the lower-triangular mixing weights: (T, T), or (heads, T, T) with several heads."""
        out = []
        for module in self.modules():
            if isinstance(module, (CausalTokenMixing, ToeplitzTokenMixing)):
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


def check_token_mixing(token_mixing: str, toeplitz_method: str) -> None:
    """One-line errors for an unknown token mixing or a Toeplitz method without Toeplitz mixing."""
    if token_mixing not in TOKEN_MIXINGS:
        raise ValueError(f"model.token_mixing={token_mixing!r}: expected one of {', '.join(TOKEN_MIXINGS)}")
    if toeplitz_method not in TOEPLITZ_METHODS:
        raise ValueError(f"model.toeplitz_method={toeplitz_method!r}: expected one of {', '.join(TOEPLITZ_METHODS)}")
    if token_mixing != "toeplitz" and toeplitz_method != "auto":
        raise ValueError(f"model.toeplitz_method={toeplitz_method} needs model.token_mixing=toeplitz")


@register_model("chat_mixer", task="text")
def chat_mixer(vocab_size: int = 84, context_length: int = 32, embedding_dim: int = 64, depth: int = 4,
               tokens_mlp_dim: int = 64, channels_mlp_dim: int = 256, dropout: float = 0.0) -> ChatMixer:
    """ChatMixer: a Mixer over a window of `context_length` chars predicting the next one."""
    return ChatMixer(vocab_size, context_length, embedding_dim, depth, tokens_mlp_dim, channels_mlp_dim, dropout)


@register_model("causal_mixer", task="text")
def causal_mixer(vocab_size: int = 84, context_length: int = 64, embedding_dim: int = 128, depth: int = 4,
                 channels_mlp_dim: int = 512, num_heads: int = 4, token_init_std: float = 0.002,
                 dropout: float = 0.0, token_mixing: str = "full", toeplitz_method: str = "auto") -> CausalLM:
    """Causal Mixer LM: lower-triangular multi-head token mixing + channel MLPs, a next-char guess at every position
    (token_mixing="toeplitz": weights by lag only, computed "direct", "fft" or "auto")."""
    check_heads(embedding_dim, num_heads, "model.embedding_dim")
    check_token_mixing(token_mixing, toeplitz_method)
    blocks = [CausalMixerBlock(context_length, embedding_dim, channels_mlp_dim, num_heads, token_init_std, dropout,
                               token_mixing, toeplitz_method) for _ in range(depth)]
    return CausalLM(vocab_size, context_length, embedding_dim, blocks, dropout, positional=token_mixing == "full")


@register_model("gmlp", task="text")
def gmlp(vocab_size: int = 84, context_length: int = 64, embedding_dim: int = 128, depth: int = 4,
         ffn_dim: int = 512, num_heads: int = 1, token_init_std: float = 0.002, dropout: float = 0.0,
         token_mixing: str = "full", toeplitz_method: str = "auto") -> CausalLM:
    """Causal gMLP LM: blocks with a spatial gating unit whose T x T weights start near zero with bias 1
    (token_mixing="toeplitz": weights by lag only)."""
    check_heads(ffn_dim // 2, num_heads, "model.ffn_dim / 2")
    check_token_mixing(token_mixing, toeplitz_method)
    blocks = [GmlpBlock(context_length, embedding_dim, ffn_dim, num_heads, token_init_std, dropout, token_mixing,
                        toeplitz_method) for _ in range(depth)]
    return CausalLM(vocab_size, context_length, embedding_dim, blocks, dropout, positional=token_mixing == "full")
