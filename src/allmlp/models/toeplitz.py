"""Translation-invariant causal token mixing: the weight of position s for position t depends only on the lag t - s.

Per channel group ("head") h, y[t] = sum_{k < K} w[h, k] x[t - k] + b[h]: a causal depthwise convolution over time
with a kernel as long as the context (K = context_length lags). Two ways to compute it, equal to float precision:
"direct" builds the lower-triangular Toeplitz matrix from the lag vector and multiplies (O(T^2) per channel, like
the full matrices), "fft" multiplies in frequency space (O(T log T)). "auto" uses the FFT from FFT_FROM_LENGTH
positions on: below it the matmul is faster (measured: docs/language-models-speed.md; benchmarks/context.py).
With no position-dependent weight, a model built on it runs on sequences of any length and can generate with a
sliding window of cached inputs (`step`).
"""

from __future__ import annotations

import torch
import torch.nn as nn

TOEPLITZ_METHODS = ("auto", "direct", "fft")
FFT_FROM_LENGTH = 192  # causal_mixer training steps, 1 CPU thread: the matmul wins at T = 128, the FFT from 256 on


def toeplitz_matrices(lag_weights: torch.Tensor, length: int) -> torch.Tensor:
    """The (H, L, L) lower-triangular matrices M[h, t, s] = w[h, t - s] (zero for lags beyond the kernel)."""
    heads, lags = lag_weights.shape
    kernel = lag_weights[:, :length]
    # u[L - 1 + k] = w[k]: every row of M is a length-L slice of u, read backwards.
    padded = torch.cat([kernel.new_zeros(heads, length - 1), kernel, kernel.new_zeros(heads, length - kernel.shape[1])],
                       dim=1)  # (H, 2L - 1)
    return padded.unfold(1, length, 1).flip(-1)  # (H, L, L)


def causal_conv_direct(x: torch.Tensor, lag_weights: torch.Tensor) -> torch.Tensor:
    """Per-head causal convolution of x (B, L, C) over time through the materialised Toeplitz matrix."""
    B, L, C = x.shape
    heads = lag_weights.shape[0]
    grouped = x.view(B, L, heads, C // heads).transpose(1, 2)  # (B, H, L, C/H)
    return (toeplitz_matrices(lag_weights, L) @ grouped).transpose(1, 2).reshape(B, L, C)


def causal_conv_fft(x: torch.Tensor, lag_weights: torch.Tensor) -> torch.Tensor:
    """The same convolution through real FFTs along time, zero-padded so that nothing wraps around."""
    B, L, C = x.shape
    heads = lag_weights.shape[0]
    kernel = lag_weights[:, :L]
    size = 1 << (L + kernel.shape[1] - 2).bit_length()  # a power of two >= L + K - 1: a linear, not cyclic, conv
    signal = torch.fft.rfft(x.transpose(1, 2), n=size)  # (B, C, F): time last is the fast layout here
    response = torch.fft.rfft(kernel, n=size).repeat_interleave(C // heads, dim=0)  # (C, F)
    return torch.fft.irfft(signal * response, n=size)[..., :L].transpose(1, 2)  # (B, L, C)


def mix_cached(slot_weights: torch.Tensor, inputs: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """One position's output from cached inputs (B, S, C) and per-head weights of each cache slot (H, S)."""
    B, S, C = inputs.shape
    heads = slot_weights.shape[0]
    mixed = torch.einsum("hs,bshd->bhd", slot_weights, inputs.view(B, S, heads, C // heads))  # (B, H, C/H)
    return (mixed + bias.view(1, heads, 1)).reshape(B, C)


class ToeplitzTokenMixing(nn.Module):
    """y[t] = sum_{k < T} w[h, k] x[t - k] + b[h] per channel group h: causal, the same weights at every position."""

    def __init__(self, context_length: int, num_heads: int, init_std: float, init_bias: float = 0.0,
                 method: str = "auto"):
        super().__init__()
        if method not in TOEPLITZ_METHODS:
            raise ValueError(f"model.toeplitz_method={method!r}: expected one of {', '.join(TOEPLITZ_METHODS)}")
        self.num_heads, self.method = num_heads, method
        self.weight = nn.Parameter(torch.randn(num_heads, context_length) * init_std)  # (H, lags 0..T-1)
        self.bias = nn.Parameter(torch.full((num_heads, 1, 1), init_bias))

    def matrices(self) -> torch.Tensor:
        """The effective (heads, T, T) lower-triangular mixing weights."""
        return toeplitz_matrices(self.weight, self.weight.shape[1])

    def uses_fft(self, length: int) -> bool:
        """Whether a sequence of `length` positions is mixed through the FFT."""
        return self.method == "fft" or (self.method == "auto" and length >= FFT_FROM_LENGTH)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, L, C = x.shape
        conv = causal_conv_fft if self.uses_fft(L) else causal_conv_direct
        mixed = conv(x, self.weight)  # (B, L, C)
        return (mixed.view(B, L, self.num_heads, -1) + self.bias.view(1, 1, self.num_heads, 1)).view(B, L, C)

    @property
    def cache_slots(self) -> int:
        """Positions `step` caches: the last T inputs, twice, so that they always lie in one slice, newest first."""
        return 2 * self.weight.shape[1]

    def step(self, x: torch.Tensor, inputs: torch.Tensor, position: int) -> torch.Tensor:
        """Output (B, C) at `position` for its input x (B, C); `inputs` (B, 2T, C) holds the last T inputs (zeros
        where nothing was written yet, as the convolution's padding) and is updated in place."""
        lags = self.weight.shape[1]
        slot = lags - 1 - position % lags  # slots run backwards in time: inputs[:, slot + k] is position - k
        inputs[:, slot] = x
        inputs[:, slot + lags] = x
        return mix_cached(self.weight, inputs[:, slot:slot + lags], self.bias)
