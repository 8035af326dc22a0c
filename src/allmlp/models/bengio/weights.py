"""What the three Bengio MLPs share: one draw of initial weights under canonical names, and moving weights between
them.

All three implementations (`module.py` with torch's kernels, `raw.py` with raw tensor ops, `layers.py` with
hand-written layers) draw their initial weights from `init_weights`, so one random seed gives all three the same
start, and they name their tensors alike ("canonical weights"), so `copy_weights` moves weights between them.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from ..protocol import unwrap

BN_EPS = 1e-5
BN_MOMENTUM = 0.1  # as torch.nn.BatchNorm1d and makemore part 3


def init_weights(vocab_size: int, context_length: int, embedding_dim: int, hidden_dim: int,
                 batch_norm: bool, direct: bool, init: str) -> dict[str, torch.Tensor]:
    """Fresh weights under the canonical names, drawn from torch's global RNG in a fixed order.

    init="kaiming": makemore part 3 (tanh gain 5/3 over sqrt(fan_in), small output layer, so the first loss is
    near log(V)); init="randn": plain standard normals as in makemore part 2 (a far worse start, as makemore shows).
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


def check_window(idx: torch.Tensor, context_length: int) -> None:
    """A clear error unless idx is a [B, context_length] tensor of token ids."""
    if idx.ndim != 2 or idx.shape[1] != context_length or idx.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"bengio: expected token ids of shape [B, {context_length}], "
                         f"got {tuple(idx.shape)} {idx.dtype}")


def bengio_inside(model: nn.Module) -> nn.Module:
    """The Bengio implementation under any Fabric/DDP/compile wrappers, or a one-line error."""
    inner = unwrap(model)
    if not hasattr(inner, "named_weights"):
        raise TypeError(f"{type(inner).__name__} is not a Bengio MLP (bengio, bengio_raw or bengio_layers)")
    return inner


@torch.no_grad()
def copy_weights(source: nn.Module, target: nn.Module) -> nn.Module:
    """Copy every weight and batch-norm statistic of one Bengio implementation into another (any of the three)."""
    src, dst = bengio_inside(source).named_weights(), bengio_inside(target).named_weights()
    if set(src) != set(dst):
        raise ValueError(f"copy_weights: different layouts ({', '.join(sorted(set(src) ^ set(dst)))} "
                         "present in only one): match batch_norm and direct")
    for name, tensor in dst.items():
        if tensor.shape != src[name].shape:
            raise ValueError(f"copy_weights: {name} has shape {tuple(src[name].shape)} in the source and "
                             f"{tuple(tensor.shape)} in the target")
        tensor.copy_(src[name])
    return target
