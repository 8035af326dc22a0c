"""gMLP for images (Liu et al. 2021, "Pay Attention to MLPs"): channel MLPs gated by a spatial gating unit."""

from __future__ import annotations

import torch
import torch.nn as nn

from . import register_model
from .blocks import DropPath, drop_path_rates
from .features import PatchTokenModel
from .mixer import PatchEmbed


class SpatialGatingUnit(nn.Module):
    """Split channels in halves u, v; normalise v, mix it across the N patches with a linear layer initialised near
    zero with bias 1 (so the unit starts as the identity on u), and gate u with it."""

    def __init__(self, num_tokens: int, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim // 2)
        self.token_mixing = nn.Linear(num_tokens, num_tokens)
        nn.init.normal_(self.token_mixing.weight, std=1e-6)
        nn.init.ones_(self.token_mixing.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u, v = x.chunk(2, dim=-1)  # (B, N, D/2) each
        v = self.token_mixing(self.norm(v).transpose(1, 2)).transpose(1, 2)  # linear along N
        return u * v


class GatedMlp(nn.Module):
    """Linear -> GELU -> (dropout) -> spatial gating (halves the width) -> Linear -> (dropout)."""

    def __init__(self, num_tokens: int, hidden_dim: int, mlp_dim: int, dropout: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(hidden_dim, mlp_dim)
        self.act = nn.GELU()
        self.drop = nn.Dropout(dropout)
        self.gate = SpatialGatingUnit(num_tokens, mlp_dim)
        self.fc2 = nn.Linear(mlp_dim // 2, hidden_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.gate(self.drop(self.act(self.fc1(x))))))  # (B, N, C), dropout as timm's


class GmlpBlock(nn.Module):
    """LayerNorm -> gated MLP -> residual: the whole gMLP block."""

    def __init__(self, num_tokens: int, hidden_dim: int, mlp_ratio: float = 6.0, dropout: float = 0.0,
                 drop_path: float = 0.0):
        super().__init__()
        self.norm = nn.LayerNorm(hidden_dim, eps=1e-6)
        self.channel_mixing = GatedMlp(num_tokens, hidden_dim, int(hidden_dim * mlp_ratio), dropout)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop_path(self.channel_mixing(self.norm(x)))  # (B, N, C)


class GmlpVision(PatchTokenModel):
    """gMLP image classifier: patch stem, `depth` gMLP blocks, final LayerNorm, mean pool, linear head.

    Init as timm's: xavier-uniform linear layers with zero biases, zero head, the gate's near-zero weights and bias 1.
    """

    def __init__(self, num_classes: int = 1000, img_size=224, in_chans: int = 3, patch_size=16,
                 hidden_dim: int = 256, depth: int = 30, mlp_ratio: float = 6.0, dropout: float = 0.0,
                 drop_path_rate: float = 0.0):
        super().__init__()
        self.in_chans, self.num_classes = in_chans, num_classes
        self.stem = PatchEmbed(img_size, patch_size, in_chans, hidden_dim)
        self.blocks = nn.Sequential(*[GmlpBlock(self.stem.num_patches, hidden_dim, mlp_ratio, dropout, rate)
                                      for rate in drop_path_rates(drop_path_rate, depth)])
        self.norm = nn.LayerNorm(hidden_dim, eps=1e-6)
        self.head = nn.Linear(hidden_dim, num_classes)
        for name, m in self.named_modules():
            if isinstance(m, nn.Linear) and not name.endswith("gate.token_mixing"):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.zeros_(self.head.weight)


# The paper's Table 1 / timm's gmlp_*16_224: (patch, hidden, depth); mlp_ratio 6 (d_ffn = 6 * d_model), 224 px RGB.
PAPER_VARIANTS = {
    "gmlp_ti16": (16, 128, 30),
    "gmlp_s16": (16, 256, 30),
    "gmlp_b16": (16, 512, 30),
}


def _register_variant(name: str, doc: str, input_size: tuple[int, int, int], classes: int, patch: int, hidden: int,
                      blocks: int, ratio: float) -> None:
    channels, side, _ = input_size

    def factory(num_classes: int = classes, img_size=(side, side), in_chans: int = channels,
                patch_size=(patch, patch), hidden_dim: int = hidden, depth: int = blocks, mlp_ratio: float = ratio,
                dropout: float = 0.0, drop_path_rate: float = 0.0) -> GmlpVision:
        return GmlpVision(num_classes, img_size, in_chans, patch_size, hidden_dim, depth, mlp_ratio, dropout,
                          drop_path_rate)

    factory.__name__, factory.__doc__ = name, doc
    register_model(name, input_size=input_size)(factory)


for _name, (_patch, _hidden, _depth) in PAPER_VARIANTS.items():
    _register_variant(_name, f"gMLP-{_name[5:-2].upper()} of the paper (16x16 patches, 224 px, ImageNet head by "
                      "default).", (3, 224, 224), 1000, _patch, _hidden, _depth, 6.0)
_register_variant("gmlp_tiny_28", "Small gMLP for 28x28 images (Fashion-MNIST): 49 tokens of 4x4 patches, 313,042 "
                  "parameters.", (1, 28, 28), 10, 4, 128, 4, 3.0)
_register_variant("gmlp_tiny_32", "Small gMLP for 32x32 images (CIFAR-10): 64 tokens of 4x4 patches, 323,978 "
                  "parameters.", (3, 32, 32), 10, 4, 128, 4, 3.0)
