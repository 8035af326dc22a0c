"""Batch augmentations of the training recipe, on tensors and vectorised over the batch: mixup, cutmix (with mixed
soft labels) and random erasing. Every random number comes from the generator the batch source passes, so a batch
stays a function of (seed, step, rank)."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def _numpy_rng(generator: torch.Generator) -> np.random.Generator:
    """A numpy generator drawn from `generator` (torch has no seeded Beta sampler)."""
    return np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=generator)))


def _boxes(height: int, width: int, area: np.ndarray, aspect: np.ndarray, rng: np.random.Generator):
    """Per-sample boxes of `area` pixels (fraction of the image) and `aspect` = h/w, centred at random and clipped
    to the image: (top, bottom, left, right), each (B,)."""
    box_h = np.sqrt(area * height * width * aspect)
    box_w = np.sqrt(area * height * width / aspect)
    cy, cx = rng.uniform(0, height, len(area)), rng.uniform(0, width, len(area))
    top, bottom = np.clip(np.round(cy - box_h / 2), 0, height), np.clip(np.round(cy + box_h / 2), 0, height)
    left, right = np.clip(np.round(cx - box_w / 2), 0, width), np.clip(np.round(cx + box_w / 2), 0, width)
    return top, bottom, left, right


def _box_mask(height: int, width: int, top, bottom, left, right) -> torch.Tensor:
    """(B, 1, H, W) bool: inside each sample's box."""
    rows, cols = torch.arange(height)[None, :, None], torch.arange(width)[None, None, :]
    t, b, l, r = (torch.as_tensor(v, dtype=torch.float32)[:, None, None] for v in (top, bottom, left, right))
    return ((rows >= t) & (rows < b) & (cols >= l) & (cols < r))[:, None]


def mix_batch(images: torch.Tensor, labels: torch.Tensor, num_classes: int, generator: torch.Generator,
              mixup_alpha: float = 0.0, cutmix_alpha: float = 0.0, mix_prob: float = 1.0):
    """Mixup (Zhang et al. 2018) and cutmix (Yun et al. 2019) per sample: images (B, C, H, W), int labels (B,)
    -> mixed images and soft targets (B, num_classes) whose rows sum to 1.

    Each sample is mixed with probability `mix_prob` with its partner in the reversed batch, with lambda ~
    Beta(alpha, alpha); when both alphas are set, half the mixed samples use cutmix (a pasted box of area 1 - lambda,
    lambda recomputed from the clipped box), the other half mixup.
    """
    b, _, h, w = images.shape
    targets = F.one_hot(labels, num_classes).float()  # (B, K)
    if b < 2 or mixup_alpha <= 0 and cutmix_alpha <= 0:
        return images, targets
    rng = _numpy_rng(generator)
    mixed = rng.uniform(size=b) < mix_prob
    if mixup_alpha > 0 and cutmix_alpha > 0:
        cut = rng.uniform(size=b) < 0.5
    else:
        cut = np.full(b, cutmix_alpha > 0)
    cut &= mixed
    alpha = np.where(cut, cutmix_alpha, mixup_alpha)
    lam = np.where(mixed, rng.beta(np.maximum(alpha, 1e-6), np.maximum(alpha, 1e-6)), 1.0)
    top, bottom, left, right = _boxes(h, w, np.where(cut, 1 - lam, 0.0), np.ones(b), rng)
    lam = np.where(cut, 1 - (bottom - top) * (right - left) / (h * w), lam)  # the pasted box's true share
    partner = images.flip(0)  # sample i with sample B-1-i: the batch is already in random order
    box = _box_mask(h, w, top, bottom, left, right) & torch.as_tensor(cut)[:, None, None, None]
    lam_t = torch.as_tensor(lam, dtype=images.dtype)[:, None, None, None]  # (B, 1, 1, 1)
    blended = lam_t * images + (1 - lam_t) * partner
    out = torch.where(box, partner, torch.where(torch.as_tensor(cut)[:, None, None, None], images, blended))
    lam_k = lam_t.reshape(b, 1).to(targets.dtype)
    return out, lam_k * targets + (1 - lam_k) * targets.flip(0)


def random_erasing(images: torch.Tensor, prob: float, generator: torch.Generator,
                   area: tuple[float, float] = (0.02, 1 / 3), aspect: tuple[float, float] = (0.3, 1 / 0.3)):
    """Random erasing (Zhong et al. 2020): with probability `prob` per image, a box of random area (a fraction of
    the image in `area`) and aspect ratio (log-uniform in `aspect`), clipped to the image, is filled with normal
    noise per pixel and channel, at the scale of normalised images (timm's "pixel" mode; timm redraws a box that
    does not fit instead of clipping it)."""
    if prob <= 0:
        return images
    b, c, h, w = images.shape
    rng = _numpy_rng(generator)
    erased = rng.uniform(size=b) < prob
    box_area = rng.uniform(*area, size=b)
    box_aspect = np.exp(rng.uniform(math.log(aspect[0]), math.log(aspect[1]), size=b))
    mask = _box_mask(h, w, *_boxes(h, w, box_area, box_aspect, rng)) & torch.as_tensor(erased)[:, None, None, None]
    noise = torch.randn(images.shape, generator=generator, dtype=images.dtype)
    return torch.where(mask, noise, images)
