"""The engine hook that adds a model's figures, embeddings and text samples to TensorBoard while it trains."""

from __future__ import annotations

import torch
import torch.nn as nn

from ..models.protocol import lm_kind
from .plots import heads_side_by_side, link_function_figure, patch_filter_images, tile_images
from .views import (char_embedding_weights, find_patch_stem, link_function_layers, sampled_links,
                    text_mixing_matrices, vision_token_mixing_units, vocab_labels)


def _upscale(image: torch.Tensor, min_side: int = 256) -> torch.Tensor:
    """Nearest-neighbour upscaling of [C, H, W] so small weight images stay visible in TensorBoard."""
    factor = max(1, min_side // max(image.shape[-2:]))
    return image.repeat_interleave(factor, dim=-2).repeat_interleave(factor, dim=-1)


def colorize(values: torch.Tensor, cmap: str = "RdBu_r") -> torch.Tensor:
    """A 2-D tensor as an RGB image [3, H, W], symmetric around zero, through a matplotlib colormap; NaN is white."""
    import matplotlib

    values = values.detach().float().cpu()
    limit = values.nan_to_num().abs().max().item() or 1.0
    rgba = matplotlib.colormaps[cmap](((values / limit + 1) / 2).numpy())  # (H, W, 4)
    image = torch.from_numpy(rgba[..., :3]).permute(2, 0, 1).float()
    return image.masked_fill(values.isnan(), 1.0)


def default_prompt(tokenizer) -> str:
    """A prompt every tokenizer can encode: empty for line data sets (names, words), else 'The ' when it fits."""
    if getattr(tokenizer, "boundary_id", None) is not None:
        return ""
    return "The " if all(c in set(tokenizer.chars) for c in "The ") else ""


def sample_text(model: nn.Module, tokenizer, prompt: str, max_new_tokens: int = 200, seed: int = 0) -> str:
    """Generated text from a language model in eval mode (restoring its mode); ImportError until generate.py exists."""
    from ..generate import generate_text

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return generate_text(model, tokenizer, prompt, max_new_tokens=max_new_tokens, temperature=0.8, seed=seed)
    finally:
        model.train(was_training)


def tensorboard_hook(cfg, tokenizer=None, max_new_tokens: int = 200, link_layers: int = 2):
    """An engine hook (step, model, writer) adding weight images, embeddings, samples and link functions."""
    prompt = default_prompt(tokenizer) if tokenizer is not None else ""
    notes_shown = set()

    def note_once(writer, tag: str, text: str) -> None:
        if tag not in notes_shown:
            notes_shown.add(tag)
            writer.add_text(tag, text, 0)

    def hook(step: int, model: nn.Module, writer) -> None:
        if writer is None:
            return
        for i, units in enumerate(vision_token_mixing_units(model)):
            mosaic = tile_images(units, symmetric=True) * 2 - 1  # back to -1..1 for the diverging colormap
            writer.add_image(f"token_mixing/layer_{i + 1:02d}", _upscale(colorize(mosaic)), step)
        stem = find_patch_stem(model)
        if stem is not None:
            mosaic = tile_images(patch_filter_images(stem.proj.weight))
            writer.add_image("patch_embedding/filters", _upscale(mosaic if mosaic.ndim == 3 else mosaic[None]), step)
        for i, matrix in enumerate(text_mixing_matrices(model)):
            writer.add_image(f"token_mixing/layer_{i + 1:02d}", _upscale(colorize(heads_side_by_side(matrix))), step)
        embeddings = char_embedding_weights(model)
        if embeddings is not None and tokenizer is not None:
            writer.add_embedding(embeddings, metadata=vocab_labels(tokenizer, len(embeddings)),
                                 tag="char_embeddings", global_step=step)
        for name, layer in link_function_layers(model)[:link_layers]:
            x, y = sampled_links(layer)
            edges = getattr(layer, "segment_edges", None)
            writer.add_figure(f"link_functions/{name}", link_function_figure(x, y, edges, f"links of {name}"), step)
        if tokenizer is not None and lm_kind(model) is not None:
            try:
                text = sample_text(model, tokenizer, prompt, max_new_tokens, seed=step)
            except ImportError:
                note_once(writer, "samples/skipped", "text samples skipped: allmlp.generate is not available")
                return
            except Exception as err:  # a sampling bug must not end a long training run; it is shown instead
                note_once(writer, "samples/error", f"text sampling failed: {type(err).__name__}: {err}")
                return
            writer.add_text("samples/text", "    " + (prompt + text).replace("\n", "\n    "), step)  # code block

    return hook
