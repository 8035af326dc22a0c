"""ResNet20 of He et al. 2016 (CIFAR variant): the convolutional baseline the CIFAR-10 Mixer recipes compare to."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import register_model
from .features import block_indices, outputs_after


class ShortcutA(nn.Module):
    """Option A shortcut: subsample by 2 and zero-pad the new channels, so shortcuts add no parameters."""

    def __init__(self, out_channels: int, in_channels: int):
        super().__init__()
        self.pad = out_channels - in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, ::2, ::2]  # (B, C, H/2, W/2)
        return F.pad(x, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with a residual connection; the first conv strides when the stage shrinks."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        changes = stride != 1 or in_channels != out_channels
        self.shortcut = ShortcutA(out_channels, in_channels) if changes else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class CifarResNet(nn.Module):
    """3x3 conv stem, three stages of `blocks_per_stage` basic blocks (widths w, 2w, 4w), global pool, linear head."""

    def __init__(self, num_classes: int = 10, in_chans: int = 3, blocks_per_stage: int = 3, width: int = 16):
        super().__init__()
        self.in_chans, self.num_classes = in_chans, num_classes
        self.stem = nn.Sequential(nn.Conv2d(in_chans, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        layers, channels = [], width
        for stage, out in enumerate((width, 2 * width, 4 * width)):
            for i in range(blocks_per_stage):
                layers.append(BasicBlock(channels, out, 2 if stage > 0 and i == 0 else 1))
                channels = out
        self.blocks = nn.Sequential(*layers)
        self.head = nn.Linear(channels, num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)

    def _check(self, x: torch.Tensor) -> None:
        if x.ndim != 4 or x.shape[1] != self.in_chans:
            raise ValueError(f"CifarResNet expects images of shape (B, {self.in_chans}, H, W), got {tuple(x.shape)}")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) -> the last stage's feature map (B, 4w, H/4, W/4)."""
        self._check(x)
        return self.blocks(self.stem(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Feature map -> logits by global average pooling (`pre_logits`: the pooled features (B, 4w))."""
        x = x.mean(dim=(2, 3))
        return x if pre_logits else self.head(x)

    def forward_intermediates(self, x: torch.Tensor, indices=None) -> list[torch.Tensor]:
        """Feature maps (B, C, H', W') after the chosen basic blocks (see `block_indices`)."""
        chosen = block_indices(len(self.blocks), indices)
        self._check(x)
        return outputs_after(self.blocks, self.stem(x), chosen)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


@register_model(input_size=(3, 32, 32))
def resnet20(num_classes: int = 10, in_chans: int = 3, width: int = 16) -> CifarResNet:
    """He et al.'s CIFAR ResNet20 (3 stages x 3 basic blocks, 16/32/64 channels, option A): 269,722 parameters."""
    return CifarResNet(num_classes, in_chans, blocks_per_stage=3, width=width)
