"""What the patch-token vision models share: the timm-style feature split (`forward_features`, `forward_head`,
`forward_intermediates`) and evaluation at other image sizes by resizing the token-mixing weights over the grid."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F


def pair(value) -> tuple[int, int]:
    """An int or a two-element sequence as (height, width)."""
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def block_indices(num_blocks: int, indices: int | Sequence[int] | None) -> list[int]:
    """The blocks `forward_intermediates` returns: an int n is the last n blocks, a sequence names blocks (negative
    ones count from the end), None is all of them."""
    if indices is None:
        return list(range(num_blocks))
    if isinstance(indices, int):
        if not 0 < indices <= num_blocks:
            raise ValueError(f"indices={indices}: the model has {num_blocks} blocks (take the last 1..{num_blocks})")
        return list(range(num_blocks - indices, num_blocks))
    chosen = []
    for index in indices:
        if not -num_blocks <= index < num_blocks:
            raise ValueError(f"block index {index} out of range: the model has {num_blocks} blocks")
        chosen.append(index % num_blocks)
    return sorted(set(chosen))


def outputs_after(blocks, x: torch.Tensor, chosen: list[int]) -> list[torch.Tensor]:
    """Run `x` through `blocks` up to the last chosen one; the outputs after each chosen block."""
    out = []
    for index, block in enumerate(blocks[:chosen[-1] + 1]):
        x = block(x)
        if index in chosen:
            out.append(x)
    return out


def _resize_grid(values: torch.Tensor, src: tuple[int, int], dst: tuple[int, int], mode: str) -> torch.Tensor:
    # values: (R, N) with N = src[0] * src[1] laid out row-major over the patch grid -> (R, N')
    grid = values.reshape(values.shape[0], 1, *src)
    kwargs = {} if mode == "nearest" else {"align_corners": False}
    return F.interpolate(grid, size=dst, mode=mode, **kwargs).reshape(values.shape[0], -1)


def resize_token_mixing(state: dict[str, torch.Tensor], src: tuple[int, int], dst: tuple[int, int],
                        mode: str = "bilinear") -> dict[str, torch.Tensor]:
    """Token-mixing weights of an `src` patch grid resized to a `dst` grid by interpolating over the grid.

    Weights that read the N tokens (Mixer fc1; the N x N linear of ResMLP and gMLP) are scaled by N/N', so that a
    sum over N' interpolated tokens keeps the size of the sum over the original N (exact for a nearest-neighbour
    upscale by an integer factor); weights and biases that write tokens are interpolated only.
    """
    if tuple(src) == tuple(dst):
        return dict(state)
    out = dict(state)
    scale = (src[0] * src[1]) / (dst[0] * dst[1])
    for name, tensor in state.items():
        if name.endswith("token_mixing.fc1.weight"):  # (D_S, N): reads tokens
            out[name] = _resize_grid(tensor, src, dst, mode) * scale
        elif name.endswith("token_mixing.fc2.weight"):  # (N, D_S): writes tokens
            out[name] = _resize_grid(tensor.t(), src, dst, mode).t().contiguous()
        elif name.endswith("token_mixing.weight"):  # (N, N): writes (rows) and reads (columns) tokens
            rows = _resize_grid(tensor.t(), src, dst, mode).t()  # (N', N)
            out[name] = (_resize_grid(rows, src, dst, mode) * scale).contiguous()  # (N', N')
        elif name.endswith("token_mixing.fc2.bias") or name.endswith("token_mixing.bias"):  # (N,)
            out[name] = _resize_grid(tensor[None], src, dst, mode)[0]
    return out


class PatchTokenModel(nn.Module):
    """Base of the patch-token classifiers (Mixer, ResMLP, gMLP): `stem` (a PatchEmbed), `blocks`, `norm`, `head`.

    Training needs the configured image size; evaluation also takes any size whose sides are multiples of the
    patch size, with the token-mixing weights resized to that grid on the fly (the rule `allmlp finetune` uses).
    """

    in_chans: int
    stem: nn.Module
    blocks: nn.Sequential
    norm: nn.Module
    head: nn.Module

    def patch_grid(self, x: torch.Tensor) -> tuple[int, int]:
        """The patch grid of images `x`, or a one-line error naming the sizes this model takes."""
        (height, width), (ph, pw) = self.stem.img_size, self.stem.patch_size
        name = type(self).__name__
        if x.ndim != 4 or x.shape[1] != self.in_chans:
            raise ValueError(f"{name} expects images of shape (B, {self.in_chans}, {height}, {width}), "
                             f"got {tuple(x.shape)}")
        h, w = x.shape[-2:]
        if (h, w) == (height, width):
            return self.stem.grid_size
        if self.training:
            raise ValueError(f"{name} trains on {height}x{width} images (model.img_size), got {h}x{w}; other sizes "
                             "are for evaluation (eval mode) or fine-tuning")
        if h % ph or w % pw:
            raise ValueError(f"{name} evaluates images whose height is a multiple of {ph} and width a multiple of "
                             f"{pw} (the patch size; trained at {height}x{width}), got {h}x{w}")
        return h // ph, w // pw

    def _blocks_output(self, x: torch.Tensor, grid: tuple[int, int]):
        """Yield (index, tokens after block index) for every block, on weights resized to `grid` if needed."""
        for index, block in enumerate(self.blocks):
            if tuple(grid) == tuple(self.stem.grid_size):
                x = block(x)
            else:
                own = dict(block.named_parameters())
                resized = resize_token_mixing(own, self.stem.grid_size, grid)
                changed = {k: v for k, v in resized.items() if v is not own[k]}
                x = torch.func.functional_call(block, changed, (x,))
            yield index, x

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) -> normalised token features (B, N, hidden_dim)."""
        grid = self.patch_grid(x)
        x = self.stem(x)  # (B, N, C)
        for _, x in self._blocks_output(x, grid):
            pass
        return self.norm(x)

    def patch_token_mixing(self) -> list[torch.Tensor]:
        """Inspection hook: per block, the first layer that reads the patches (Mixer's fc1, ResMLP's and gMLP's
        N x N linear), its hidden units on the patch grid: (units, gh, gw)."""
        gh, gw = self.stem.grid_size
        units = []
        for module in self.blocks.modules():
            mixing = getattr(module, "token_mixing", None)
            reads = mixing if isinstance(mixing, nn.Linear) else getattr(mixing, "fc1", None)
            if isinstance(reads, nn.Linear) and reads.in_features == gh * gw:
                units.append(reads.weight.detach().view(-1, gh, gw))
        return units

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Token features (B, N, C) -> logits (B, num_classes) by global average pooling (`pre_logits`: the pooled
        features (B, C))."""
        x = x.mean(dim=1)
        return x if pre_logits else self.head(x)

    def forward_intermediates(self, x: torch.Tensor, indices: int | Sequence[int] | None = None,
                              norm: bool = False) -> list[torch.Tensor]:
        """Feature maps (B, C, H', W') after the chosen blocks (see `block_indices`); `norm` applies the final norm."""
        chosen = block_indices(len(self.blocks), indices)
        grid = self.patch_grid(x)
        x = self.stem(x)  # (B, N, C)
        maps = []
        for index, x in self._blocks_output(x, grid):
            if index in chosen:
                y = self.norm(x) if norm else x  # (B, N, C)
                maps.append(y.transpose(1, 2).reshape(y.shape[0], y.shape[2], *grid))
            if index == chosen[-1]:
                break
        return maps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))
