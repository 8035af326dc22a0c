"""Piecewise polynomial layers: every link (input i -> output o) is its own piecewise polynomial of x_i.

A link over `input_range` has `segments` equal segments; on each the polynomial is a Lagrange interpolant through
`n` Chebyshev-Lobatto nodes (n=1: constant, n=2: linear, n=3: quadratic, ...), whose values are the weights.
Continuous layers share the end node of neighbouring segments ((n-1)*segments+1 weights per link); discontinuous
ones do not (n*segments). Each input lies in one segment, so only that segment's n weights per link take part.
Inputs outside `input_range` are mirrored back into it (never extrapolated), so a link is bounded by its values
on the range whatever normalisation feeds it.

Two equivalent forward passes (no Python loop over segments in either):
- sparse: an `embedding_bag` over the active weight rows only, weighted by the Lagrange basis values;
- dense: the (n*segments)-wide expansion, zero outside the active segment, times the weights as one matmul.
On CPU a matmul is ~10x faster per multiply than a gather, so `impl="auto"` uses the sparse pass only when a
link has more than SPARSE_MIN_WEIGHTS weights (the 128-segment character input layer) and the dense one for
the few-segment hidden layers (measured in benchmarks/highorder.py).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

LAYER_TYPES = ("continuous", "discontinuous")
INITIALIZATIONS = ("uniform", "kaiming", "linear")
IMPLEMENTATIONS = ("auto", "sparse", "dense")
SPARSE_MIN_WEIGHTS = 16


def chebyshev_lobatto_nodes(n: int) -> list[float]:
    """n Chebyshev-Lobatto points on [-1, 1], ascending (both end points included); n=1 gives the centre."""
    if n < 1:
        raise ValueError(f"n (points per segment) must be >= 1, got {n}")
    if n == 1:
        return [0.0]
    return [-math.cos(math.pi * j / (n - 1)) for j in range(n)]


def lagrange_basis(xi: torch.Tensor, nodes: list[float]) -> torch.Tensor:
    """Values of the Lagrange polynomials through `nodes` at local coordinates xi: (...,) -> (..., n)."""
    if len(nodes) == 1:
        return torch.ones_like(xi).unsqueeze(-1)
    factors = [xi - node for node in nodes]  # n is small and fixed: this unrolls cleanly under torch.compile
    columns = []
    for j, node_j in enumerate(nodes):
        scale = 1.0
        for m, node_m in enumerate(nodes):
            if m != j:
                scale /= node_j - node_m
        value = None
        for m, factor in enumerate(factors):
            if m != j:
                value = factor if value is None else value * factor
        columns.append(value * scale)
    return torch.stack(columns, dim=-1)


def mirror_into_range(u: torch.Tensor) -> torch.Tensor:
    """Fold u into [0, 1] by mirror reflection at 0 and 1 (a triangle wave of period 2; slope +-1 everywhere).

    A polynomial of degree n-1 grows like |xi|^(n-1) outside its segment: a LayerNorm output of 2 (common) lies
    at local coordinate 3 of the end segment of a 2-segment link, where the quartic (n=5) basis is ~270x its
    in-range size; that started the language-interpolation project's n=5 line at 590 nats. Reflecting keeps every
    link within its values on the range, for any input (what its `periodicity: 2.0` did)."""
    return 1 - (torch.remainder(u, 2) - 1).abs()


def check_layer_type(layer_type: str, n: int) -> bool:
    """True for continuous layers; a clear error for an unknown type or a continuous piecewise constant."""
    if layer_type not in LAYER_TYPES:
        raise ValueError(f"layer_type must be one of {', '.join(LAYER_TYPES)}, got {layer_type!r}")
    if layer_type == "continuous" and n < 2:
        raise ValueError("n=1 (piecewise constant) needs layer_type=discontinuous")
    return layer_type == "continuous"


class PiecewisePolynomial(nn.Module):
    """Fully connected layer whose links are piecewise polynomials of their input: (..., in) -> (..., out)."""

    def __init__(self, in_features: int, out_features: int, n: int = 2, segments: int = 2,
                 layer_type: str = "continuous", input_range: tuple[float, float] = (-1.0, 1.0),
                 initialization: str = "uniform", impl: str = "auto"):
        super().__init__()
        if impl not in IMPLEMENTATIONS:
            raise ValueError(f"impl must be one of {', '.join(IMPLEMENTATIONS)}, got {impl!r}")
        if in_features < 1 or out_features < 1:
            raise ValueError(f"features must be >= 1, got in={in_features}, out={out_features}")
        if segments < 1:
            raise ValueError(f"segments must be >= 1, got {segments}")
        low, high = float(input_range[0]), float(input_range[1])
        if not high > low:
            raise ValueError(f"input_range must be increasing, got {input_range}")
        self.in_features, self.out_features = in_features, out_features
        self.n, self.segments = n, segments
        self.continuous = check_layer_type(layer_type, n)
        self.input_range = (low, high)
        self.nodes = chebyshev_lobatto_nodes(n)
        # stride between the first weights of neighbouring segments: continuous segments share one end point
        self.segment_stride = n - 1 if self.continuous else n
        self.weights_per_link = (n - 1) * segments + 1 if self.continuous else n * segments
        # (in, weights per link, out): row i*K + k is what input i at weight k adds to every output
        self.weight = nn.Parameter(torch.empty(in_features, self.weights_per_link, out_features))
        self.sparse = impl == "sparse" or (impl == "auto" and self.weights_per_link > SPARSE_MIN_WEIGHTS)
        self.reset_parameters(initialization)

    @property
    def segment_edges(self) -> torch.Tensor:
        """The segments' boundaries in input space: (segments + 1,)."""
        return torch.linspace(self.input_range[0], self.input_range[1], self.segments + 1)

    def node_positions(self) -> list[float]:
        """Input-space position of every weight of a link (shared end points of continuous segments agree)."""
        width = (self.input_range[1] - self.input_range[0]) / self.segments
        positions = [0.0] * self.weights_per_link
        for segment in range(self.segments):
            start = self.input_range[0] + width * segment
            for j, node in enumerate(self.nodes):
                positions[segment * self.segment_stride + j] = start + (node + 1) / 2 * width
        return positions

    def reset_parameters(self, initialization: str = "uniform") -> None:
        """uniform: independent U(-1/in, 1/in) weights (high-order-layers-torch's magnitude, the project's layers);
        kaiming: independent N(0, 1/in); linear: every link starts as a straight line a*x, a ~ N(0, 1/in).

        Behind a LayerNorm the weights' scale does not change what a layer computes, but it sets how far one Adam
        step (about lr per weight, whatever the scale) moves it: the project's learning rates (1e-5 to 1e-3) were
        tuned for weights of size 1/in, ~sqrt(in) times smaller than kaiming's. Its lr=1e-5 line
        `linear_2_hidden` reached val 3.194 after 400 steps with them, 3.295 with kaiming (its unigram prior:
        3.298); the lr=1e-3 `single_case` 2.08 against 2.25."""
        if initialization not in INITIALIZATIONS:
            raise ValueError(f"initialization must be one of {', '.join(INITIALIZATIONS)}, got {initialization!r}")
        std = 1.0 / math.sqrt(self.in_features)
        with torch.no_grad():
            if initialization == "uniform":
                self.weight.uniform_(-1.0 / self.in_features, 1.0 / self.in_features)
            elif initialization == "kaiming":
                self.weight.normal_(0.0, std)
            else:
                slope = torch.randn(self.in_features, 1, self.out_features, device=self.weight.device) * std
                positions = torch.tensor(self.node_positions(), device=self.weight.device).view(1, -1, 1)
                self.weight.copy_(slope * positions)

    def locate(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Active segment of each input and its local coordinate in [-1, 1]; inputs outside the range are
        mirrored back into it first (see `mirror_into_range`)."""
        low, high = self.input_range
        t = mirror_into_range((x - low) / (high - low)) * self.segments
        segment = t.detach().floor().clamp(0, self.segments - 1)
        xi = 2 * (t - segment) - 1
        return segment.long(), xi

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., in) -> (..., out)."""
        lead = x.shape[:-1]
        x = x.reshape(-1, self.in_features)  # (B, in)
        if not self.sparse:
            out = self.dense_features(x) @ self.weight.reshape(-1, self.out_features)  # (B, out)
            return out.reshape(*lead, self.out_features)
        segment, xi = self.locate(x)  # (B, in), (B, in)
        basis = lagrange_basis(xi, self.nodes)  # (B, in, n)
        offsets = torch.arange(self.n, device=x.device)
        link_start = torch.arange(self.in_features, device=x.device) * self.weights_per_link  # (in,)
        rows = (link_start + segment * self.segment_stride).unsqueeze(-1) + offsets  # (B, in, n)
        table = self.weight.reshape(-1, self.out_features)  # (in * K, out)
        out = F.embedding_bag(rows.reshape(len(x), -1), table, mode="sum",
                              per_sample_weights=basis.reshape(len(x), -1).to(table.dtype))  # (B, out)
        return out.reshape(*lead, self.out_features)

    def dense_features(self, x: torch.Tensor) -> torch.Tensor:
        """The equivalent dense expansion of x: (B, in) -> (B, in * K), zero outside each active segment."""
        segment, xi = self.locate(x)
        basis = lagrange_basis(xi, self.nodes)  # (B, in, n)
        index = segment.unsqueeze(-1) * self.segment_stride + torch.arange(self.n, device=x.device)  # (B, in, n)
        features = basis.new_zeros(*x.shape, self.weights_per_link).scatter_add(-1, index, basis)  # (B, in, K)
        return features.flatten(1)

    @torch.no_grad()
    def link_functions(self, points: int = 100) -> tuple[torch.Tensor, torch.Tensor]:
        """Every link sampled over the input range: x (P,), y (out, in, P)."""
        x = torch.linspace(self.input_range[0], self.input_range[1], points, device=self.weight.device)
        segment, xi = self.locate(x)  # (P,), (P,)
        basis = lagrange_basis(xi, self.nodes)  # (P, n)
        index = segment.unsqueeze(1) * self.segment_stride + torch.arange(self.n, device=x.device)  # (P, n)
        active = self.weight[:, index]  # (in, P, n, out)
        y = torch.einsum("ipno,pn->oip", active, basis.to(active.dtype))
        return x.cpu(), y.cpu()

    def extra_repr(self) -> str:
        kind = "continuous" if self.continuous else "discontinuous"
        return (f"in={self.in_features}, out={self.out_features}, n={self.n}, segments={self.segments}, {kind}, "
                f"range={self.input_range}")


class Polynomial(PiecewisePolynomial):
    """A single-segment piecewise polynomial layer: every link is one polynomial of degree n-1."""

    def __init__(self, in_features: int, out_features: int, n: int = 3,
                 input_range: tuple[float, float] = (-1.0, 1.0), initialization: str = "uniform"):
        layer_type = "continuous" if n >= 2 else "discontinuous"
        super().__init__(in_features, out_features, n=n, segments=1, layer_type=layer_type,
                         input_range=input_range, initialization=initialization)


class PiecewisePolynomialConv1d(nn.Module):
    """1-d convolution whose kernel links are piecewise polynomials: (B, C_in, L) -> (B, C_out, L_out)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, n: int = 2,
                 segments: int = 2, layer_type: str = "continuous", input_range: tuple[float, float] = (-1.0, 1.0),
                 initialization: str = "uniform"):
        super().__init__()
        self.kernel_size, self.stride = kernel_size, stride
        self.layer = PiecewisePolynomial(in_channels * kernel_size, out_channels, n=n, segments=segments,
                                         layer_type=layer_type, input_range=input_range,
                                         initialization=initialization)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, L) -> (B, C_out, L_out), L_out = (L - kernel_size) // stride + 1."""
        if x.shape[-1] < self.kernel_size:
            raise ValueError(f"sequence length {x.shape[-1]} is shorter than kernel_size {self.kernel_size}")
        windows = x.unfold(-1, self.kernel_size, self.stride)  # (B, C_in, L_out, k)
        windows = windows.permute(0, 2, 1, 3).flatten(2)  # (B, L_out, C_in * k)
        return self.layer(windows).transpose(1, 2)  # (B, C_out, L_out)

    @property
    def segment_edges(self) -> torch.Tensor:
        """The segments' boundaries in input space."""
        return self.layer.segment_edges

    def link_functions(self, points: int = 100) -> tuple[torch.Tensor, torch.Tensor]:
        """Kernel links sampled over the input range: x (P,), y (out, in * kernel, P)."""
        return self.layer.link_functions(points)


class MaxAbsNorm(nn.Module):
    """Divide each vector by its largest absolute entry: outputs in [-1, 1], no parameters."""

    def __init__(self, eps: float = 1e-6):
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., D) -> (..., D)."""
        return x / x.abs().amax(dim=-1, keepdim=True).clamp(min=self.eps)


NORMALIZATIONS = ("layer", "maxabs", "none")


def make_norm(normalization: str, width: int, layer_gain: float = 1 / 3) -> nn.Module:
    """layer (LayerNorm with its gain starting at `layer_gain`), maxabs (MaxAbsNorm, no parameters) or none.

    The default gain 1/3 starts a LayerNorm's outputs at standard deviation 1/3, so 99.7% of them lie inside a
    piecewise layer's [-1, 1] (the rest are mirrored back); the gain learns to widen them. With gain 1 a third
    of them lay outside, and its n=4 line reached val 4.45 after 91 steps against 4.09 with 1/3."""
    if normalization == "layer":
        norm = nn.LayerNorm(width)
        nn.init.constant_(norm.weight, layer_gain)
        return norm
    if normalization == "maxabs":
        return MaxAbsNorm()
    if normalization == "none":
        return nn.Identity()
    raise ValueError(f"normalization must be one of {', '.join(NORMALIZATIONS)}, got {normalization!r}")
