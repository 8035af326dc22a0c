"""Pretrained weights: the official google-research Mixer `.npz` (flax names), timm-layout Mixer, ResMLP and gMLP
state dicts, and the official (DeiT repository) ResMLP layout.

Every layout is converted to our names (`stem.proj`, `blocks.{i}.token_mixing.fc1`, ...) and loaded into a
`mixer_*`, `resmlp_*` or `gmlp_*` model, with a new head and token-mixing weights resized over the patch grid where
needed. `allmlp finetune --weights FILE PRESET` (cli/finetune.py) trains from such weights.
"""

from __future__ import annotations

import math
import pickle
import re
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from .models.features import resize_token_mixing  # noqa: F401  (public here since 0.2)

# Our name inside `blocks.{i}.` -> the flax name inside `MixerBlock_{i}/` (vit_jax/models_mixer.py).
FLAX_BLOCK_NAMES = {
    "norm1.weight": "LayerNorm_0/scale", "norm1.bias": "LayerNorm_0/bias",
    "token_mixing.fc1.weight": "token_mixing/Dense_0/kernel", "token_mixing.fc1.bias": "token_mixing/Dense_0/bias",
    "token_mixing.fc2.weight": "token_mixing/Dense_1/kernel", "token_mixing.fc2.bias": "token_mixing/Dense_1/bias",
    "norm2.weight": "LayerNorm_1/scale", "norm2.bias": "LayerNorm_1/bias",
    "channel_mixing.fc1.weight": "channel_mixing/Dense_0/kernel",
    "channel_mixing.fc1.bias": "channel_mixing/Dense_0/bias",
    "channel_mixing.fc2.weight": "channel_mixing/Dense_1/kernel",
    "channel_mixing.fc2.bias": "channel_mixing/Dense_1/bias",
}
FLAX_TOP_NAMES = {
    "stem.proj.weight": "stem/kernel", "stem.proj.bias": "stem/bias",
    "norm.weight": "pre_head_layer_norm/scale", "norm.bias": "pre_head_layer_norm/bias",
    "head.weight": "head/kernel", "head.bias": "head/bias",
}
# timm's Mixer, ResMLP and gMLP names and the official ResMLP ones (DeiT repository) -> ours, applied in order;
# everything else (stem.proj, norm1, norm2, norm, head) is already the same.
TIMM_RENAMES = (("mlp_tokens.", "token_mixing."), ("mlp_channels.", "channel_mixing."),
                ("linear_tokens.", "token_mixing."), ("gate.proj.", "gate.token_mixing."),  # timm ResMLP, gMLP
                ("patch_embed.", "stem."), (".attn.", ".token_mixing."), (".mlp.", ".channel_mixing."),  # DeiT ResMLP
                (".gamma_1", ".ls1"), (".gamma_2", ".ls2"))
FLAX_PREFIXES = ("params/", "opt/target/", "target/")


class PretrainedError(ValueError):
    """A weights file does not fit the model; the message lists the keys that differ."""


def _flax_to_torch(name: str, array: np.ndarray) -> torch.Tensor:
    tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    if name.endswith("stem/kernel"):
        return tensor.permute(3, 2, 0, 1).contiguous()  # conv kernel HWIO -> OIHW
    if name.endswith("/kernel"):
        return tensor.t().contiguous()  # dense kernel (in, out) -> Linear weight (out, in)
    return tensor


def from_flax(arrays: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Official Mixer `.npz` arrays (flax names, '/'-separated) -> a state dict with our names.

    Names we do not know are kept under `unknown:NAME` so that the loader can list them.
    """
    out = {}
    to_ours = {flax: ours for ours, flax in FLAX_TOP_NAMES.items()}
    for raw_name, array in arrays.items():
        name = raw_name
        for prefix in FLAX_PREFIXES:
            name = name[len(prefix):] if name.startswith(prefix) else name
        block = re.fullmatch(r"MixerBlock_(\d+)/(.+)", name)
        if block and block.group(2) in FLAX_BLOCK_NAMES.values():
            inner = next(k for k, v in FLAX_BLOCK_NAMES.items() if v == block.group(2))
            out[f"blocks.{block.group(1)}.{inner}"] = _flax_to_torch(name, array)
        elif name in to_ours:
            out[to_ours[name]] = _flax_to_torch(name, array)
        else:
            out[f"unknown:{raw_name}"] = torch.from_numpy(np.asarray(array))
    return out


def from_timm(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A timm-layout Mixer, ResMLP or gMLP state dict, or an official ResMLP one -> our names; ours pass unchanged."""
    out = {}
    for name, tensor in state.items():
        name = name.removeprefix("module.")
        for old, new in TIMM_RENAMES:
            name = name.replace(old, new)
        if name.endswith((".alpha", ".beta")) and tensor.ndim == 3:  # timm's ResMLP Affine is (1, 1, C); ours (C,)
            tensor = tensor.reshape(-1)
        out[name] = tensor.float() if tensor.is_floating_point() else tensor
    return out


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """Read `.npz` (official flax Mixer), `.pth`/`.pt`/`.bin` (torch) or `.safetensors` weights, in our names."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as archive:
                return from_flax({name: archive[name] for name in archive.files})
        except ValueError as err:
            if "allow_pickle" in str(err):  # numpy refused pickled objects (an object array, or a pickle file)
                raise PretrainedError(f"{path}: holds pickled Python objects, which are never loaded "
                                      "(they can run code); expected numeric arrays only") from None
            raise PretrainedError(f"{path}: not a readable .npz archive ({_first_line(err)})") from None
        except (OSError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as err:  # truncated or bit-flipped zip
            raise PretrainedError(f"{path}: not a readable .npz archive ({_first_line(err)})") from None
    if suffix in (".pth", ".pt", ".bin"):
        try:
            with warnings.catch_warnings():  # torch warns about a foreign pickle protocol before refusing the file
                warnings.simplefilter("ignore")
                state = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:  # weights_only refused a global: a payload, or a non-tensor object
            raise PretrainedError(f"{path}: holds Python objects other than tensors, which are never loaded "
                                  "(they can run code); expected a plain state dict") from None
        except Exception as err:  # torch.load raises several kinds on a corrupt or foreign file
            raise PretrainedError(f"{path}: not a readable torch state dict ({err.__class__.__name__})") from None
        for wrapper in ("state_dict", "model", "state_dict_ema"):
            if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
                state = state[wrapper]
                break
        if not isinstance(state, dict):
            raise PretrainedError(f"{path}: expected a state dict, found {type(state).__name__}")
        return from_timm(state)
    if suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return from_timm(load_file(str(path)))
        except (SafetensorError, OSError) as err:
            raise PretrainedError(f"{path}: corrupt safetensors file ({_first_line(err)})") from None
    raise PretrainedError(f"{path}: unknown weights format {suffix!r}; expected .npz, .pth, .pt, .bin or .safetensors")


def _first_line(err: Exception) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else err.__class__.__name__


def _square_grid(num_tokens: int, where: str) -> tuple[int, int]:
    side = math.isqrt(num_tokens)
    if side * side != num_tokens:
        raise PretrainedError(f"{where}: {num_tokens} tokens is not a square patch grid, so the token-mixing "
                              f"weights cannot be resized; keep the checkpoint's image size and patch size")
    return side, side


# The first weight of each family that reads the N tokens: its second dimension is the checkpoint's token count.
TOKEN_PROBES = ("blocks.0.token_mixing.fc1.weight", "blocks.0.token_mixing.weight",
                "blocks.0.channel_mixing.gate.token_mixing.weight")


def _describe(keys: list[str], state: dict, own: dict | None = None) -> str:
    shown = []
    for key in keys[:6]:
        name = key.removeprefix("unknown:")
        if own is not None:
            shown.append(f"{name} {tuple(state[key].shape)} vs model {tuple(own[key].shape)}")
        else:
            shown.append(name)
    return ", ".join(shown) + (f" (+{len(keys) - 6} more)" if len(keys) > 6 else "")


def load_pretrained(model: nn.Module, state: dict[str, torch.Tensor], new_head: bool = False) -> dict:
    """Load converted weights into a Mixer, ResMLP or gMLP `model`; returns what was adapted: {"resized": ...,
    "new_head": ...}.

    `new_head` keeps the model's freshly initialised head (another class count). Token-mixing weights are
    resized when the patch grid differs; every other mismatch is a PretrainedError listing the keys.
    """
    from .models.features import PatchTokenModel
    from .models.protocol import unwrap

    model = unwrap(model)
    if not isinstance(model, PatchTokenModel):
        raise PretrainedError(f"pretrained weights need a mixer_*, resmlp_* or gmlp_* model, not "
                              f"{type(model).__name__}")
    own = model.state_dict()
    state = dict(state)
    if new_head:
        state = {k: v for k, v in state.items() if not k.startswith("head.")}
        state.update({k: v for k, v in own.items() if k.startswith("head.")})
    resized = None
    probe = next((key for key in TOKEN_PROBES if key in state and key in own), None)
    if probe is not None and state[probe].shape[1] != own[probe].shape[1]:
        src = _square_grid(state[probe].shape[1], "checkpoint")
        dst = model.stem.grid_size
        state = resize_token_mixing(state, src, dst)
        resized = f"{src[0]}x{src[1]} -> {dst[0]}x{dst[1]} patches"
    stem = "stem.proj.weight"
    if stem in state and stem in own and state[stem].shape[2:] != own[stem].shape[2:]:
        raise PretrainedError(f"stem.proj.weight: the checkpoint's patches are {tuple(state[stem].shape[2:])}, the "
                              f"model's {tuple(own[stem].shape[2:])}; set model.patch_size={state[stem].shape[2]}")
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing: {_describe(missing, state)}")
        if unexpected:
            parts.append(f"unexpected: {_describe(unexpected, state)}")
        if wrong:
            parts.append(f"wrong shape: {_describe(wrong, state, own)}")
        raise PretrainedError(f"weights do not fit {type(model).__name__} with {len(model.blocks)} blocks "
                              f"({'; '.join(parts)})")
    model.load_state_dict(state)
    return {"resized": resized, "new_head": new_head}
