"""What allmlp asks of a model beyond `nn.Module`: the language-model protocol and the optional hooks.

A language model has `lm_kind` and `context_length` and maps ids (B, T) to logits: (B, V) for "window" models (the
char after the window) and "centered" models (the char in the middle, from both sides), (B, T, V) for "causal"
models (every next char). Generation, evaluation and chat use nothing else. Every other hook is optional: a model
defines the ones that apply to it, and generic code asks for them through `hook(model, name)`, never through the
model's class.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Protocol, runtime_checkable

import torch
import torch.nn as nn

from ..data.text import LM_KINDS  # noqa: F401  (re-exported: the kinds belong to the protocol as much as to batches)


@runtime_checkable
class LanguageModel(Protocol):
    """The protocol of every text model: forward(ids (B, T)) -> logits (B, V) or (B, T, V)."""

    lm_kind: str  # one of LM_KINDS
    context_length: int  # chars the model sees (causal models: at most this many)

    def __call__(self, idx: torch.Tensor) -> torch.Tensor: ...


class TokenMixingMatrices(Protocol):
    """Text models: per layer, how much each position feeds each position: (T, T) or (heads, T, T)."""

    def token_mixing_matrices(self) -> list[torch.Tensor]: ...


class CharEmbeddings(Protocol):
    """Text models: the character embedding table (V, D)."""

    def char_embeddings(self) -> torch.Tensor: ...


class PatchTokenMixing(Protocol):
    """Vision Mixers: per block, the first token-mixing layer's hidden units on the patch grid (units, gh, gw)."""

    def patch_token_mixing(self) -> list[torch.Tensor]: ...


class LinkFunctions(Protocol):
    """Piecewise polynomial layers: each link sampled at `points` inputs, x (P,) and y (out, in, P)."""

    segment_edges: torch.Tensor  # (segments + 1,) boundaries of the input range

    def link_functions(self, points: int = 100) -> tuple[torch.Tensor, torch.Tensor]: ...


class ExtraFiles(Protocol):
    """Models with state outside tensors (a LightGBM booster): written into and read from the run folder."""

    def save_files(self, run_dir: Path) -> None: ...

    def load_files(self, run_dir: Path) -> None: ...


class StartAtUnigram(Protocol):
    """Models whose logits can start at the training text's char frequencies: log_prior (V,) of the train split."""

    def start_at_unigram(self, log_prior: torch.Tensor) -> None: ...


class IncrementalDecoding(Protocol):
    """Causal models that generate at a constant cost per char: a state from a prefix, then one char per step."""

    receptive_field: int  # chars that still change the next logits (weights by lag)

    def init_state(self, *args, **kwargs): ...

    def step(self, *args, **kwargs): ...


class ManualBackward(Protocol):
    """Models with hand-written gradients: the mean loss of windows x (B, T) -> next chars y (B,), every
    parameter's .grad filled without autograd (`optim.manual_backprop=true`)."""

    def loss_and_grads(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor: ...


HOOKS = ("token_mixing_matrices", "char_embeddings", "patch_token_mixing", "link_functions", "save_files",
         "load_files", "loss_and_grads", "start_at_unigram", "init_state", "step")


def hook(model: nn.Module, name: str) -> Callable | None:
    """The model's optional hook `name` (one of HOOKS), or None when the model has none."""
    if name not in HOOKS:
        raise ValueError(f"unknown model hook {name!r}; hooks: {', '.join(HOOKS)}")
    method = getattr(model, name, None)
    return method if callable(method) else None


def lm_kind(model: nn.Module) -> str | None:
    """"window", "causal" or "centered" for a language model, None for other models."""
    return getattr(model, "lm_kind", None)


def is_language_model(model: nn.Module) -> bool:
    """Whether `model` follows the language-model protocol (a known lm_kind and a context length)."""
    return lm_kind(model) in LM_KINDS and isinstance(getattr(model, "context_length", None), int)


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module under Fabric, DDP and torch.compile wrappers (its state dict has the real names)."""
    while True:
        inner = getattr(model, "_forward_module", None) or getattr(model, "_orig_mod", None) \
            or getattr(model, "module", None)
        if inner is None or not isinstance(inner, nn.Module):
            return model
        model = inner
