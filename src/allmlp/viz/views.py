"""Looking inside a model through its optional hooks (models/protocol.py): each view is empty (or None) when the
model has no such part."""

from __future__ import annotations

import torch
import torch.nn as nn

from ..models.protocol import hook, lm_kind
from .plots import char_label


def sampled_links(layer: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """The layer's links sampled finely enough to show every segment (>= 8 points each, 200..2000 in all)."""
    edges = getattr(layer, "segment_edges", None)
    segments = len(edges) - 1 if edges is not None else 1
    return layer.link_functions(min(2000, max(200, 8 * segments)))


def find_patch_stem(model: nn.Module) -> nn.Module | None:
    """The patch-embedding stem: a module with a Conv2d `proj` and a `grid_size` (vision Mixers)."""
    for module in model.modules():
        if hasattr(module, "grid_size") and isinstance(getattr(module, "proj", None), nn.Conv2d):
            return module
    return None


def vision_token_mixing_units(model: nn.Module) -> list[torch.Tensor]:
    """Per Mixer block, the first token-mixing layer's weights on the patch grid: [units, gh, gw] (the model's
    `patch_token_mixing` hook), or []."""
    method = hook(model, "patch_token_mixing")
    return [units.detach().float().cpu() for units in method()] if method is not None else []


def text_mixing_matrices(model: nn.Module) -> list[torch.Tensor]:
    """The text model's per-layer [T, T] / [heads, T, T] position-mixing weights (its inspection hook), or []."""
    method = hook(model, "token_mixing_matrices")
    return [m.detach().float().cpu() for m in method()] if method is not None else []


def char_embedding_weights(model: nn.Module) -> torch.Tensor | None:
    """The text model's character embeddings [V, D] (its `char_embeddings()` hook), or None."""
    method = hook(model, "char_embeddings")
    return method().detach().float().cpu() if method is not None else None


def link_function_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, layer) of every piecewise polynomial layer (modules with a `link_functions` method), outermost only."""
    found: list[tuple[str, nn.Module]] = []
    for name, module in model.named_modules():
        inside_found = any(name.startswith(f"{outer}.") or not outer for outer, _ in found)
        if hook(module, "link_functions") is not None and not inside_found:
            found.append((name, module))
    return [(name or type(model).__name__, module) for name, module in found]


def vocab_labels(tokenizer, vocab_size: int) -> list[str]:
    """Printable label per token id: its character, `<b>` for the line boundary token, `#id` past the chars."""
    chars = list(getattr(tokenizer, "chars", []) or [])
    boundary = getattr(tokenizer, "boundary_id", None)
    return ["<b>" if i == boundary else char_label(chars[i]) if i < len(chars) else f"#{i}" for i in range(vocab_size)]


def samples_per_step(cfg, model: nn.Module | None = None) -> int:
    """Samples one optimizer step consumes, in the engine's samples/s unit (a causal LM counts predicted chars)."""
    per_row = int(model.context_length) if lm_kind(model) == "causal" else 1
    return cfg.data.batch_size * max(1, cfg.train.accumulate_grad_batches) * per_row
