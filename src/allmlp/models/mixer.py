"""Vision MLP-Mixer (Tolstikhin et al. 2021), the paper's variants, and the reference MNIST project's `MLPMixer`."""

from __future__ import annotations

import torch
import torch.nn as nn

from . import register_model
from .blocks import Mlp, MixerBlock, drop_path_rates
from .features import PatchTokenModel, block_indices, outputs_after, pair


def _check_image(x: torch.Tensor, in_chans: int, img_size: tuple[int, int], model: str) -> None:
    if x.ndim != 4 or x.shape[1] != in_chans or tuple(x.shape[-2:]) != tuple(img_size):
        raise ValueError(f"{model} expects images of shape (B, {in_chans}, {img_size[0]}, {img_size[1]}), "
                         f"got {tuple(x.shape)}")


class PatchEmbed(nn.Module):
    """Non-overlapping patches -> linear projection, as one strided convolution (sizes: int or (height, width))."""

    def __init__(self, img_size, patch_size, in_chans: int, hidden_dim: int):
        super().__init__()
        self.img_size, self.patch_size = pair(img_size), pair(patch_size)
        if self.img_size[0] % self.patch_size[0] or self.img_size[1] % self.patch_size[1]:
            shown = patch_size if isinstance(patch_size, int) else self.patch_size
            raise ValueError(f"image size {self.img_size} is not divisible by patch_size={shown}")
        self.grid_size = (self.img_size[0] // self.patch_size[0], self.img_size[1] // self.patch_size[1])
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.proj = nn.Conv2d(in_chans, hidden_dim, kernel_size=self.patch_size, stride=self.patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # (B, C, H', W') -> (B, N, C)


class MlpMixer(PatchTokenModel):
    """Paper-faithful MLP-Mixer: patch stem, `depth` Mixer blocks, final LayerNorm, mean pool, linear head.

    LayerNorm eps is 1e-6 as in the official JAX code and timm; GELU is exact unless `gelu="tanh"` (JAX's default
    approximation: use it to reproduce the official checkpoints' logits exactly). `drop_path_rate`: stochastic depth
    of the last block, rising linearly from 0 at the first.
    """

    def __init__(self, num_classes: int = 1000, img_size=224, in_chans: int = 3, patch_size=16,
                 hidden_dim: int = 768, depth: int = 12, tokens_mlp_dim: int = 384,
                 channels_mlp_dim: int = 3072, dropout: float = 0.0, norm_eps: float = 1e-6, gelu: str = "none",
                 drop_path_rate: float = 0.0):
        super().__init__()
        if gelu not in ("none", "tanh"):
            raise ValueError(f"model.gelu must be 'none' (exact) or 'tanh', got {gelu!r}")
        self.in_chans, self.num_classes = in_chans, num_classes
        self.stem = PatchEmbed(img_size, patch_size, in_chans, hidden_dim)
        self.blocks = nn.Sequential(*[
            MixerBlock(self.stem.num_patches, hidden_dim, tokens_mlp_dim, channels_mlp_dim, dropout, norm_eps, gelu,
                       rate) for rate in drop_path_rates(drop_path_rate, depth)])
        self.norm = nn.LayerNorm(hidden_dim, eps=norm_eps)
        self.head = nn.Linear(hidden_dim, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        # As the official code: zero head, xavier-uniform MLPs with small normal biases, lecun stem.
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        for m in self.blocks.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.normal_(m.bias, std=1e-6)
        fan_in = self.stem.proj.weight[0].numel()
        nn.init.trunc_normal_(self.stem.proj.weight, std=(1.0 / fan_in) ** 0.5)
        nn.init.zeros_(self.stem.proj.bias)


# The paper's Table 1: (patch, hidden C, depth, tokens_mlp_dim D_S, channels_mlp_dim D_C).
PAPER_VARIANTS = {
    "mixer_s32": (32, 512, 8, 256, 2048),
    "mixer_s16": (16, 512, 8, 256, 2048),
    "mixer_b32": (32, 768, 12, 384, 3072),
    "mixer_b16": (16, 768, 12, 384, 3072),
    "mixer_l32": (32, 1024, 24, 512, 4096),
    "mixer_l16": (16, 1024, 24, 512, 4096),
    "mixer_h14": (14, 1280, 32, 640, 5120),
}


def _register_paper_variant(name: str, patch: int, hidden: int, depth: int, tokens: int, channels: int):
    def factory(num_classes: int = 1000, img_size=(224, 224), in_chans: int = 3, patch_size=(patch, patch),
                hidden_dim: int = hidden, depth: int = depth, tokens_mlp_dim: int = tokens,
                channels_mlp_dim: int = channels, dropout: float = 0.0, norm_eps: float = 1e-6,
                gelu: str = "none", drop_path_rate: float = 0.0) -> MlpMixer:
        return MlpMixer(num_classes, img_size, in_chans, patch_size, hidden_dim, depth, tokens_mlp_dim,
                        channels_mlp_dim, dropout, norm_eps, gelu, drop_path_rate)

    factory.__name__ = name
    factory.__doc__ = f"Mixer-{name[6:].upper()} of the paper (224 px, ImageNet head by default)."
    register_model(name, input_size=(3, 224, 224))(factory)


for _name, _dims in PAPER_VARIANTS.items():
    _register_paper_variant(_name, *_dims)


@register_model(input_size=(1, 28, 28))
def mixer_tiny_28(num_classes: int = 10, img_size=(28, 28), in_chans: int = 1, patch_size=(4, 4),
                  hidden_dim: int = 128, depth: int = 6, tokens_mlp_dim: int = 96,
                  channels_mlp_dim: int = 384, dropout: float = 0.0, norm_eps: float = 1e-6,
                  gelu: str = "none", drop_path_rate: float = 0.0) -> MlpMixer:
    """Small Mixer for 28x28 images (MNIST, Fashion-MNIST): 49 tokens of 4x4 patches."""
    return MlpMixer(num_classes, img_size, in_chans, patch_size, hidden_dim, depth, tokens_mlp_dim,
                    channels_mlp_dim, dropout, norm_eps, gelu, drop_path_rate)


@register_model(input_size=(3, 32, 32))
def mixer_tiny_32(num_classes: int = 10, img_size=(32, 32), in_chans: int = 3, patch_size=(4, 4),
                  hidden_dim: int = 128, depth: int = 4, tokens_mlp_dim: int = 64,
                  channels_mlp_dim: int = 512, dropout: float = 0.0, norm_eps: float = 1e-6,
                  gelu: str = "none", drop_path_rate: float = 0.0) -> MlpMixer:
    """Small Mixer for 32x32 images (CIFAR-10): 64 tokens of 4x4 patches."""
    return MlpMixer(num_classes, img_size, in_chans, patch_size, hidden_dim, depth, tokens_mlp_dim,
                    channels_mlp_dim, dropout, norm_eps, gelu, drop_path_rate)


class ReferenceMixerBlock(nn.Module):
    """The reference MNIST project's Mixer block, kept exactly: LayerNorm over patches, embedding MLP, patch MLP."""

    def __init__(self, patch_dim: int, embedding_dim: int, mlp_dim: int):
        super().__init__()
        self.ln1 = nn.LayerNorm(patch_dim)
        self.mlp1 = Mlp(embedding_dim, mlp_dim)
        self.ln2 = nn.LayerNorm(patch_dim)
        self.mlp2 = Mlp(patch_dim, mlp_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, embedding_dim, patch_dim)
        out = self.mlp1(self.ln1(x).permute(0, 2, 1)).permute(0, 2, 1)  # mixes along embedding_dim
        summed = out + x
        return self.mlp2(self.ln2(summed)) + summed  # mixes along the patches


class MLPMixer(nn.Module):
    """The reference MNIST project's model with its exact constructor: conv patches, Mixer blocks, 3-layer GELU
    classifier."""

    def __init__(self, img_shape=(1, 28, 28), patch_size: int = 7, embedding_dim: int = 128, n_layers: int = 3,
                 mlp_dim: int = 64, clf_dim: int = 512, n_classes: int = 10):
        super().__init__()
        self.img_shape = tuple(img_shape)
        self.patch_embedding = PatchEmbed(self.img_shape[1:], patch_size, self.img_shape[0], embedding_dim)
        patch_dim = self.patch_embedding.num_patches
        self.mixers = nn.Sequential(*[ReferenceMixerBlock(patch_dim, embedding_dim, mlp_dim) for _ in range(n_layers)])
        self.clf = nn.Sequential(nn.Linear(patch_dim * embedding_dim, clf_dim), nn.GELU(),
                                 nn.Linear(clf_dim, clf_dim), nn.GELU(),
                                 nn.Linear(clf_dim, n_classes))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images -> (B, embedding_dim, patch_dim) features after the Mixer blocks."""
        _check_image(x, self.img_shape[0], self.img_shape[1:], "MLPMixer")
        x = self.patch_embedding.proj(x).flatten(2)  # (B, E, N)
        return self.mixers(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Features -> logits through the 3-layer classifier (`pre_logits`: the flattened features it reads)."""
        return x.flatten(1) if pre_logits else self.clf(x.flatten(1))

    def forward_intermediates(self, x: torch.Tensor, indices=None) -> list[torch.Tensor]:
        """Feature maps (B, embedding_dim, H', W') after the chosen Mixer blocks (see `block_indices`)."""
        chosen = block_indices(len(self.mixers), indices)
        _check_image(x, self.img_shape[0], self.img_shape[1:], "MLPMixer")
        x = self.patch_embedding.proj(x).flatten(2)  # (B, E, N)
        grid = self.patch_embedding.grid_size
        return [y.reshape(y.shape[0], y.shape[1], *grid) for y in outputs_after(self.mixers, x, chosen)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def patch_token_mixing(self) -> list[torch.Tensor]:
        """Inspection hook: per block, the patch MLP's (`mlp2`) first layer on the patch grid (units, gh, gw)."""
        gh, gw = self.patch_embedding.grid_size
        return [block.mlp2.fc1.weight.detach().view(-1, gh, gw) for block in self.mixers]


@register_model(input_size=(1, 28, 28))
def mlp_mixer_seed(img_shape=(1, 28, 28), patch_size: int = 7, embedding_dim: int = 128, n_layers: int = 3,
                   mlp_dim: int = 64, clf_dim: int = 512, n_classes: int = 10) -> MLPMixer:
    """The reference MNIST project's `MLPMixer` with its README's settings."""
    return MLPMixer(img_shape, patch_size, embedding_dim, n_layers, mlp_dim, clf_dim, n_classes)


class MlpClassifier(nn.Module):
    """A plain MLP on flattened pixels: the baseline a vision Mixer must beat."""

    def __init__(self, num_classes: int = 10, img_size=28, in_chans: int = 1, hidden_dims=(256, 256),
                 dropout: float = 0.0):
        super().__init__()
        self.in_chans, self.img_size = in_chans, pair(img_size)
        layers, width = [], in_chans * self.img_size[0] * self.img_size[1]
        for hidden in hidden_dims:
            layers += [nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(dropout)]
            width = hidden
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images -> the last hidden layer's activations (B, hidden)."""
        _check_image(x, self.in_chans, self.img_size, "MlpClassifier")
        return self.body(x.flatten(1))  # (B, C*H*W) -> (B, hidden)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Hidden activations (B, hidden) -> logits (B, num_classes)."""
        return x if pre_logits else self.head(x)

    def forward_intermediates(self, x: torch.Tensor, indices=None) -> list[torch.Tensor]:
        """Activations (B, hidden) after the chosen hidden layers (see `block_indices`)."""
        layers = [self.body[i:i + 3] for i in range(0, len(self.body), 3)]  # Linear, ReLU, Dropout per layer
        chosen = block_indices(len(layers), indices)
        _check_image(x, self.in_chans, self.img_size, "MlpClassifier")
        return outputs_after(layers, x.flatten(1), chosen)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


@register_model(input_size=(1, 28, 28))
def mlp_classifier(num_classes: int = 10, img_size=28, in_chans: int = 1, hidden_dims: tuple = (256, 256),
                   dropout: float = 0.0) -> MlpClassifier:
    """Baseline MLP (784-256-256-10 by default) for 28x28 images."""
    return MlpClassifier(num_classes, img_size, in_chans, hidden_dims, dropout)
