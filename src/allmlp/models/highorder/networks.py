"""Language networks built from piecewise polynomial layers (the language-interpolation project's `net=`
choices).

Every network is a window language model: it reads `context_length` characters and returns logits for the next
one ([B, V]). Characters enter as scalars: token id c becomes x = (2c + 1) / V - 1, the centre of segment c
of an input layer with `input_segments` = V segments (0 = V), so each character owns one segment per link,
as its 128-segment ASCII input layer does (our ids come from the tokenizer, so V is the corpus'
alphabet, e.g. 65 for Shakespeare, not 128).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .layers import MaxAbsNorm, PiecewisePolynomial, PiecewisePolynomialConv1d, make_norm

LINEAR_HEAD_SCALE = 0.1  # an nn.Linear head's default init gives logits of std ~0.5: shrunk to ~0.05


def chars_to_scalars(idx: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Token ids (B, T) -> the centres of their segments in [-1, 1] (B, T)."""
    return (2 * idx.float() + 1) / vocab_size - 1


def start_at_prior(layer: nn.Module, log_prior: torch.Tensor, weight_scale: float) -> None:
    """Make a final layer's logits `weight_scale` x its own plus `log_prior` (V,): out -> scale * out + prior."""
    with torch.no_grad():
        if isinstance(layer, PiecewisePolynomial):
            # the Lagrange basis of the active segment sums to 1, so c / in_features on every weight of the links
            # into output o adds exactly c to o, whatever the input: a bias without a new parameter
            layer.weight.mul_(weight_scale).add_(log_prior.to(layer.weight) / layer.in_features)
        elif isinstance(layer, nn.Linear):
            layer.weight.mul_(weight_scale)
            layer.bias.mul_(weight_scale).add_(log_prior.to(layer.bias))
        else:
            raise TypeError(f"cannot put a prior into a {type(layer).__name__} output layer")


class HighOrderLM(nn.Module):
    """Shared parts of the networks: the character scalars, the protocol attributes and the inspection hooks."""

    lm_kind = "window"
    head_name = "output_layer"  # the submodule that returns the logits

    def __init__(self, vocab_size: int, context_length: int, lm_kind: str = "window"):
        super().__init__()
        if vocab_size < 2 or context_length < 1:
            raise ValueError(f"need vocab_size >= 2 and context_length >= 1, got {vocab_size}, {context_length}")
        self.vocab_size, self.context_length, self.lm_kind = vocab_size, context_length, lm_kind

    def scalars(self, idx: torch.Tensor) -> torch.Tensor:
        """(B, T) ids -> (B, T) input scalars; a clear error when the window has the wrong length."""
        if idx.shape[-1] != self.context_length:
            raise ValueError(f"expected {self.context_length} context characters, got {idx.shape[-1]}")
        return chars_to_scalars(idx, self.vocab_size)

    def start_at_unigram(self, log_prior: torch.Tensor, weight_scale: float | None = None) -> None:
        """Start the logits at the training text's log unigram frequencies (V,) plus a small random part.

        Karpathy's "init the final layer to the data's prior": the first loss is then about the unigram entropy
        (3.3 nats on the project's book, not ln V = 4.3), so every step of learning counts below it; its lines
        at lr 1e-5 spent their first minute just walking down to the prior. A piecewise head (uniform init: logits
        of std ~0.03) keeps its random part; an nn.Linear head's is shrunk by LINEAR_HEAD_SCALE."""
        head = self.get_submodule(self.head_name)
        if weight_scale is None:
            weight_scale = LINEAR_HEAD_SCALE if isinstance(head, nn.Linear) else 1.0
        start_at_prior(head, log_prior, weight_scale)

    def piecewise_layers(self) -> list[PiecewisePolynomial]:
        """The piecewise polynomial layers in order (for link-function plots)."""
        return [m for m in self.modules() if isinstance(m, PiecewisePolynomial)]


class HighOrderMLP(HighOrderLM):
    """Piecewise input layer, `hidden_layers` piecewise hidden layers, piecewise output layer; a norm between."""

    def __init__(self, vocab_size: int, context_length: int, n: int, segments: int, layer_type: str,
                 hidden_width: int, hidden_layers: int, normalization: str, initialization: str,
                 input_segments: int, lm_kind: str = "window"):
        super().__init__(vocab_size, context_length, lm_kind)
        piece = dict(n=n, layer_type=layer_type, initialization=initialization)
        self.input_layer = PiecewisePolynomial(context_length, hidden_width, segments=input_segments or vocab_size,
                                               **piece)
        layers: list[nn.Module] = [make_norm(normalization, hidden_width)]
        for _ in range(hidden_layers):
            layers += [PiecewisePolynomial(hidden_width, hidden_width, segments=segments, **piece),
                       make_norm(normalization, hidden_width)]
        self.hidden = nn.Sequential(*layers)
        self.output_layer = PiecewisePolynomial(hidden_width, vocab_size, segments=segments, **piece)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """(B, T) ids -> (B, V) next-character logits."""
        h = self.input_layer(self.scalars(idx))  # (B, W)
        return self.output_layer(self.hidden(h))  # (B, V)


class HighOrderInputMLP(HighOrderLM):
    """Piecewise input layer that bins each character into its own segment, then a standard ReLU MLP."""

    def __init__(self, vocab_size: int, context_length: int, n: int, layer_type: str, hidden_width: int,
                 hidden_layers: int, normalization: str, initialization: str, input_segments: int):
        super().__init__(vocab_size, context_length)
        self.input_layer = PiecewisePolynomial(context_length, hidden_width, n=n, layer_type=layer_type,
                                               segments=input_segments or vocab_size, initialization=initialization)
        layers: list[nn.Module] = [make_norm(normalization, hidden_width, layer_gain=1.0)]  # feeds nn.Linear
        for _ in range(hidden_layers):
            layers += [nn.Linear(hidden_width, hidden_width), nn.ReLU()]
        self.hidden = nn.Sequential(*layers)
        self.output_layer = nn.Linear(hidden_width, vocab_size)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """(B, T) ids -> (B, V) next-character logits."""
        return self.output_layer(self.hidden(self.input_layer(self.scalars(idx))))


class HighOrderConvNet(HighOrderLM):
    """Piecewise 1-d convolutions over the character scalars (one channel), then a piecewise output layer."""

    def __init__(self, vocab_size: int, context_length: int, n: int, segments: int, layer_type: str,
                 channels: int, conv_layers: int, kernel_size: int, stride: int, normalization: str,
                 initialization: str, input_segments: int):
        super().__init__(vocab_size, context_length)
        piece = dict(n=n, layer_type=layer_type, initialization=initialization)
        convs, norms, length = [], [], context_length
        for i in range(conv_layers):
            if length < kernel_size:
                raise ValueError(f"conv: {conv_layers} layers of kernel {kernel_size}, stride {stride} need a longer "
                                 f"context than {context_length}")
            convs.append(PiecewisePolynomialConv1d(1 if i == 0 else channels, channels, kernel_size, stride,
                                                   segments=(input_segments or vocab_size) if i == 0 else segments,
                                                   **piece))
            norms.append(make_norm(normalization, channels))
            length = (length - kernel_size) // stride + 1
        self.convs, self.norms = nn.ModuleList(convs), nn.ModuleList(norms)
        self.flat_norm = MaxAbsNorm()
        self.output_layer = PiecewisePolynomial(channels * length, vocab_size, segments=segments, **piece)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """(B, T) ids -> (B, V) next-character logits."""
        h = self.scalars(idx).unsqueeze(1)  # (B, 1, T): its data.add_channel_dimension
        for conv, norm in zip(self.convs, self.norms):
            h = norm(conv(h).transpose(1, 2)).transpose(1, 2)  # (B, C, L)
        return self.output_layer(self.flat_norm(h.flatten(1)))  # (B, V)


def tail_chunks(context_length: int, focus: int) -> list[int]:
    """Chunk lengths from the oldest to the newest character: `focus`, 2*focus, 4*focus ... from the tail."""
    sizes, remaining, size = [], context_length, focus
    while remaining > 0:
        sizes.append(min(size, remaining))
        remaining -= sizes[-1]
        size *= 2
    return sizes[::-1]


class TailFocusNet(HighOrderLM):
    """Long contexts, coarser with distance: chunks doubling in length away from the tail, each squeezed by its
    own piecewise layer to `chunk_features`, then a piecewise MLP on the concatenation."""

    head_name = "mlp.output_layer"

    def __init__(self, vocab_size: int, context_length: int, n: int, segments: int, layer_type: str,
                 hidden_width: int, hidden_layers: int, focus: int, chunk_features: int, normalization: str,
                 initialization: str, input_segments: int):
        super().__init__(vocab_size, context_length)
        piece = dict(n=n, layer_type=layer_type, initialization=initialization)
        self.chunk_sizes = tail_chunks(context_length, focus)
        self.chunk_layers = nn.ModuleList(
            PiecewisePolynomial(size, chunk_features, segments=input_segments or vocab_size, **piece)
            for size in self.chunk_sizes)
        self.mlp = HighOrderMLP(vocab_size, chunk_features * len(self.chunk_sizes), n, segments, layer_type,
                                hidden_width, hidden_layers, normalization, initialization, input_segments=segments)
        self.chunk_norm = MaxAbsNorm()

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """(B, T) ids -> (B, V) next-character logits."""
        chunks = self.scalars(idx).split(self.chunk_sizes, dim=1)
        features = torch.cat([layer(c) for layer, c in zip(self.chunk_layers, chunks)], dim=1)  # (B, F * chunks)
        h = self.mlp.input_layer(self.chunk_norm(features))
        return self.mlp.output_layer(self.mlp.hidden(h))


class PiecewiseAttentionBlock(nn.Module):
    """Pre-norm causal self-attention and MLP, every projection piecewise polynomial (inputs max-abs normed)."""

    def __init__(self, width: int, heads: int, n: int, segments: int, layer_type: str, initialization: str):
        super().__init__()
        if width % heads:
            raise ValueError(f"hidden_width {width} is not divisible by heads {heads}")
        piece = dict(n=n, segments=segments, layer_type=layer_type, initialization=initialization)
        self.heads = heads
        self.norm = MaxAbsNorm()
        self.qkv = PiecewisePolynomial(width, 3 * width, **piece)
        self.proj = PiecewisePolynomial(width, width, **piece)
        self.mlp = PiecewisePolynomial(width, width, **piece)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """(B, T, C) -> (B, T, C)."""
        B, T, C = h.shape
        q, k, v = self.qkv(self.norm(h)).view(B, T, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        att = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, heads, T, C / heads)
        h = h + self.proj(self.norm(att.transpose(1, 2).reshape(B, T, C)))
        return h + self.mlp(self.norm(h))


class HighOrderTransformer(HighOrderLM):
    """Each character scalar -> a piecewise embedding, positions added, causal blocks, the last position -> logits.

    `high_order_blocks=False` keeps only the piecewise input and uses standard transformer blocks (ReLU MLPs)."""

    head_name = "head"

    def __init__(self, vocab_size: int, context_length: int, n: int, segments: int, layer_type: str,
                 hidden_width: int, hidden_layers: int, heads: int, initialization: str, input_segments: int,
                 high_order_blocks: bool = True):
        super().__init__(vocab_size, context_length)
        piece = dict(n=n, layer_type=layer_type, initialization=initialization)
        self.embed = PiecewisePolynomial(1, hidden_width, segments=input_segments or vocab_size, **piece)
        self.position = nn.Parameter(torch.zeros(context_length, hidden_width))
        if high_order_blocks:
            self.blocks = nn.ModuleList(PiecewiseAttentionBlock(hidden_width, heads, segments=segments, **piece)
                                        for _ in range(hidden_layers))
            self.final_norm: nn.Module = MaxAbsNorm()
            self.head: nn.Module = PiecewisePolynomial(hidden_width, vocab_size, segments=segments, **piece)
        else:
            self.blocks = nn.ModuleList(
                nn.TransformerEncoderLayer(hidden_width, heads, 4 * hidden_width, dropout=0.0, batch_first=True,
                                           norm_first=True) for _ in range(hidden_layers))
            self.final_norm = nn.LayerNorm(hidden_width)
            self.head = nn.Linear(hidden_width, vocab_size)
        self.register_buffer("causal_mask", nn.Transformer.generate_square_subsequent_mask(context_length),
                             persistent=False)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """(B, T) ids -> (B, V) next-character logits."""
        h = self.embed(self.scalars(idx).unsqueeze(-1)) + self.position  # (B, T, C)
        for block in self.blocks:
            if isinstance(block, nn.TransformerEncoderLayer):
                h = block(h, src_mask=self.causal_mask, is_causal=True)
            else:
                h = block(h)
        return self.head(self.final_norm(h[:, -1]))  # (B, V)


class HighOrderMamba(HighOrderLM):
    """Piecewise character embedding, a Mamba state-space stack (mambapy), the last position -> logits.

    Without fused kernels mambapy materialises (B, T, 2 * hidden_width, d_state) tensors in every layer, so a
    CPU step grows with d_state: 4 (not mambapy's 16) made it 2.8x (batch 1024) to 4.4x (batch 256) faster here."""

    head_name = "head"

    def __init__(self, vocab_size: int, context_length: int, n: int, layer_type: str, hidden_width: int,
                 hidden_layers: int, initialization: str, input_segments: int, d_state: int = 4):
        super().__init__(vocab_size, context_length)
        try:
            from mambapy.mamba import Mamba, MambaConfig
        except ImportError:
            raise ImportError("model ho_mamba needs the mambapy package: pip install 'allmlp[mamba]'") from None
        self.embed = PiecewisePolynomial(1, hidden_width, n=n, layer_type=layer_type,
                                         segments=input_segments or vocab_size, initialization=initialization)
        self.mamba = Mamba(MambaConfig(d_model=hidden_width, n_layers=hidden_layers, d_state=d_state, pscan=True))
        self.norm = nn.LayerNorm(hidden_width)
        self.head = nn.Linear(hidden_width, vocab_size)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """(B, T) ids -> (B, V) next-character logits."""
        h = self.mamba(self.embed(self.scalars(idx).unsqueeze(-1)))  # (B, T, C)
        return self.head(self.norm(h[:, -1]))
