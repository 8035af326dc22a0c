"""Pooled features of a trained image model over a data split, for downstream use (linear probes, retrieval)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .checkpoint import check_run_dir, load_run
from .data.batches import iterate_in_order
from .data.images import resize_images
from .models import model_info


@torch.no_grad()
def pooled_features(model: torch.nn.Module, images: torch.Tensor, batch_size: int = 500,
                    img_size: int = 0) -> torch.Tensor:
    """`forward_head(forward_features(x), pre_logits=True)` for all images, in batches: (N, num_features)."""
    device = next(model.parameters()).device
    out = []
    for (x,) in iterate_in_order([images], batch_size):
        x = resize_images(x.to(device), img_size)
        out.append(model.forward_head(model.forward_features(x), pre_logits=True).float().cpu())
    return torch.cat(out)


def embed_run(run_dir: str | Path, split: str = "test", ema: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Pooled features (N, C) float32 and labels (N,) of split `split` of a trained image run (`ema`: the averaged
    weights, model_ema.safetensors, instead of the raw ones)."""
    from .tasks.classification import load_splits

    run_dir = check_run_dir(run_dir)
    model, cfg, _ = load_run(run_dir, ema=ema)
    if model_info(cfg.model.name)["task"] != "image":
        raise ValueError(f"embed needs an image model; {run_dir} holds {cfg.model.name}, a "
                         f"{model_info(cfg.model.name)['task']} model")
    splits = load_splits(cfg)
    if split not in splits:
        raise ValueError(f"split {split!r} not available; choose one of {', '.join(splits)}")
    images, labels = splits[split]
    features = pooled_features(model, images, cfg.data.eval_batch_size, cfg.data.img_size)
    return features.numpy().astype(np.float32), labels.numpy()
