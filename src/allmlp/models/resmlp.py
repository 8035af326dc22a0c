"""ResMLP (Touvron et al. 2021): Affine instead of LayerNorm, one linear layer across patches, LayerScale."""

from __future__ import annotations

import torch
import torch.nn as nn

from . import register_model
from .blocks import DropPath, Mlp, drop_path_rates
from .features import PatchTokenModel
from .mixer import PatchEmbed


class Affine(nn.Module):
    """Per-channel `alpha * x + beta`: ResMLP's replacement of LayerNorm (no statistics of the input)."""

    def __init__(self, dim: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(dim))
        self.beta = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.beta, self.alpha, x)


class ResMlpBlock(nn.Module):
    """Affine -> linear across the N patches -> LayerScale -> residual; Affine -> channel MLP -> LayerScale ->
    residual."""

    def __init__(self, num_tokens: int, hidden_dim: int, mlp_ratio: float = 4.0, init_values: float = 1e-4,
                 dropout: float = 0.0, drop_path: float = 0.0):
        super().__init__()
        self.norm1 = Affine(hidden_dim)
        self.token_mixing = nn.Linear(num_tokens, num_tokens)
        self.ls1 = nn.Parameter(torch.full((hidden_dim,), float(init_values)))
        self.norm2 = Affine(hidden_dim)
        self.channel_mixing = Mlp(hidden_dim, int(hidden_dim * mlp_ratio), dropout=dropout)
        self.ls2 = nn.Parameter(torch.full((hidden_dim,), float(init_values)))
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, N, C)
        mixed = self.token_mixing(self.norm1(x).transpose(1, 2)).transpose(1, 2)  # linear along N
        x = x + self.drop_path(self.ls1 * mixed)
        return x + self.drop_path(self.ls2 * self.channel_mixing(self.norm2(x)))


class ResMlp(PatchTokenModel):
    """ResMLP: patch stem, `depth` ResMLP blocks, final Affine, mean pool, linear head (the official DeiT code's
    init: truncated normal std 0.02 for linear layers, zero biases). `init_values` starts the LayerScales."""

    def __init__(self, num_classes: int = 1000, img_size=224, in_chans: int = 3, patch_size=16,
                 hidden_dim: int = 384, depth: int = 12, mlp_ratio: float = 4.0, init_values: float = 1e-4,
                 dropout: float = 0.0, drop_path_rate: float = 0.0):
        super().__init__()
        self.in_chans, self.num_classes = in_chans, num_classes
        self.stem = PatchEmbed(img_size, patch_size, in_chans, hidden_dim)
        self.blocks = nn.Sequential(*[
            ResMlpBlock(self.stem.num_patches, hidden_dim, mlp_ratio, init_values, dropout, rate)
            for rate in drop_path_rates(drop_path_rate, depth)])
        self.norm = Affine(hidden_dim)
        self.head = nn.Linear(hidden_dim, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)


# The paper's Table 1 / timm's resmlp_*_224: (patch, hidden, depth, LayerScale init), mlp_ratio 4, 224 px RGB.
PAPER_VARIANTS = {
    "resmlp_12": (16, 384, 12, 0.1),
    "resmlp_24": (16, 384, 24, 1e-5),
    "resmlp_36": (16, 384, 36, 1e-6),
    "resmlp_b24": (8, 768, 24, 1e-6),
}


def _register_variant(name: str, doc: str, input_size: tuple[int, int, int], classes: int, patch: int, hidden: int,
                      blocks: int, ratio: float, init: float) -> None:
    channels, side, _ = input_size

    def factory(num_classes: int = classes, img_size=(side, side), in_chans: int = channels,
                patch_size=(patch, patch), hidden_dim: int = hidden, depth: int = blocks, mlp_ratio: float = ratio,
                init_values: float = init, dropout: float = 0.0, drop_path_rate: float = 0.0) -> ResMlp:
        return ResMlp(num_classes, img_size, in_chans, patch_size, hidden_dim, depth, mlp_ratio, init_values,
                      dropout, drop_path_rate)

    factory.__name__, factory.__doc__ = name, doc
    register_model(name, input_size=input_size)(factory)


for _name, (_patch, _hidden, _depth, _init) in PAPER_VARIANTS.items():
    _register_variant(_name, f"ResMLP-{_name[7:].upper()} of the paper (224 px, ImageNet head by default).",
                      (3, 224, 224), 1000, _patch, _hidden, _depth, 4.0, _init)
_register_variant("resmlp_tiny_28", "Small ResMLP for 28x28 images (Fashion-MNIST): 49 tokens of 4x4 patches, "
                  "280,274 parameters.", (1, 28, 28), 10, 4, 128, 4, 2.0, 0.1)
_register_variant("resmlp_tiny_32", "Small ResMLP for 32x32 images (CIFAR-10): 64 tokens of 4x4 patches, "
                  "291,210 parameters.", (3, 32, 32), 10, 4, 128, 4, 2.0, 0.1)
