"""Every figure of a model or a run folder, written as PNGs (what `allmlp viz` and `allmlp report` show)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Callable

import torch.nn as nn

from .plots import (plot_char_embeddings, plot_confusion_matrix, plot_curves, plot_link_functions, plot_patch_filters,
                    plot_token_mixing_matrices, plot_token_mixing_patches)
from .views import (char_embedding_weights, find_patch_stem, link_function_layers, sampled_links, samples_per_step,
                    text_mixing_matrices, vision_token_mixing_units, vocab_labels)


def figures_for_model(model: nn.Module, out_dir: Path, tokenizer=None, link_layers: int = 4) -> dict[str, Path]:
    """Every weight figure that applies to `model`, written as PNGs into `out_dir`: {figure name: path}."""
    out_dir = Path(out_dir)
    figures: dict[str, Path] = {}
    units = vision_token_mixing_units(model)
    if units:
        figures["token_mixing"] = plot_token_mixing_patches(units, out_dir / "token_mixing.png")
    stem = find_patch_stem(model)
    if stem is not None:
        figures["patch_projections"] = plot_patch_filters(stem.proj.weight, out_dir / "patch_projections.png")
    matrices = text_mixing_matrices(model)
    if matrices:
        figures["token_mixing"] = plot_token_mixing_matrices(matrices, out_dir / "token_mixing.png")
    embeddings = char_embedding_weights(model)
    if embeddings is not None:
        labels = vocab_labels(tokenizer, len(embeddings)) if tokenizer is not None else \
            [str(i) for i in range(len(embeddings))]
        figures["char_embeddings"] = plot_char_embeddings(embeddings, labels, out_dir / "char_embeddings.png")
    for index, (name, layer) in enumerate(link_function_layers(model)[:link_layers]):
        x, y = sampled_links(layer)
        figures[f"link_functions_{index + 1}"] = plot_link_functions(
            x, y, getattr(layer, "segment_edges", None), out_dir / f"link_functions_{index + 1}.png",
            title=f"links of {name}")
    return figures


def figures_for_run(run_dir: str | Path, out_dir: str | Path | None = None, confusion: bool = True,
                    log: Callable[[str], None] = warnings.warn, x: str = "step") -> dict[str, Path]:
    """All figures of a run folder from its checkpoint and metrics.jsonl: curves (against `x`), weights, confusion
    (`log` hears why one was skipped)."""
    from ..checkpoint import load_run, read_metrics
    from ..models import model_info

    model, cfg, tokenizer = load_run(run_dir)
    out_dir = Path(out_dir or run_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    figures: dict[str, Path] = {}
    records = read_metrics(run_dir)
    if any("loss" in r for r in records):
        figures["curves"] = plot_curves(records, out_dir / "curves.png", title=f"{cfg.model.name}: training curves",
                                        x=x, step_samples=samples_per_step(cfg, model))
    figures.update(figures_for_model(model, out_dir, tokenizer))
    if confusion and model_info(cfg.model.name)["task"] == "image":
        try:
            result = evaluate_with_figures(model, cfg, out_dir, split="test")
            figures["confusion_matrix"] = Path(result["confusion_png"])
        except (OSError, ValueError, KeyError) as err:  # the data set may be absent where the run is viewed
            log(f"confusion matrix skipped: {err}")
    return figures


def evaluate_with_figures(model: nn.Module, cfg, run_dir: str | Path, split: str = "test", tokenizer=None,
                          tag: str = "") -> dict:
    """The task's evaluation of a trained model; a confusion matrix becomes `confusion_{split}{tag}.png` in
    `run_dir` (its path under "confusion_png"), so the result is plain JSON."""
    from ..tasks import task_module

    result = task_module(cfg).evaluate_run(model, cfg, run_dir, split=split, tokenizer=tokenizer)
    if "confusion_matrix" in result:
        png = plot_confusion_matrix(result.pop("confusion_matrix"), result.pop("classes"),
                                    Path(run_dir) / f"confusion_{split}{tag}.png")
        result["confusion_png"] = str(png)
    return result
