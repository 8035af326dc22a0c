"""The Bengio MLP from hand-written layers (makemore part 3): Linear, BatchNorm1d, Tanh, Embedding, Flatten and
Sequential as plain classes, never torch.nn layers or torch.nn.functional."""

from __future__ import annotations

import torch
import torch.nn as nn

from .. import register_model
from .backprop import manual_loss_and_grads
from .raw import batch_norm_by_hand
from .weights import check_window, init_weights


class Linear:
    """x @ weight (+ bias); weight is [fan_in, fan_out]."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None):
        self.weight, self.bias = weight, bias
        self.training = True

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.out = x @ self.weight
        if self.bias is not None:
            self.out = self.out + self.bias
        return self.out

    def tensors(self) -> dict[str, torch.Tensor]:
        """Its tensors by attribute name (none for weightless layers)."""
        return {"weight": self.weight} | ({"bias": self.bias} if self.bias is not None else {})


class BatchNorm1d:
    """Batch norm over the batch dimension with a trained gain/bias and running statistics for eval."""

    def __init__(self, gain: torch.Tensor, bias: torch.Tensor, running_mean: torch.Tensor, running_var: torch.Tensor):
        self.gain, self.bias, self.running_mean, self.running_var = gain, bias, running_mean, running_var
        self.training = True

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.out = batch_norm_by_hand(x, self.gain, self.bias, self.running_mean, self.running_var, self.training)
        return self.out

    def tensors(self) -> dict[str, torch.Tensor]:
        """Its tensors by attribute name (none for weightless layers)."""
        return {"gain": self.gain, "bias": self.bias, "running_mean": self.running_mean,
                "running_var": self.running_var}


class Tanh:
    """Elementwise tanh."""

    training = True

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.out = torch.tanh(x)
        return self.out

    def tensors(self) -> dict[str, torch.Tensor]:
        """Its tensors by attribute name (none for weightless layers)."""
        return {}


class Embedding:
    """A lookup table: ids [B, T] -> rows [B, T, D]."""

    def __init__(self, weight: torch.Tensor):
        self.weight = weight
        self.training = True

    def __call__(self, idx: torch.Tensor) -> torch.Tensor:
        self.out = self.weight[idx]
        return self.out

    def tensors(self) -> dict[str, torch.Tensor]:
        """Its tensors by attribute name (none for weightless layers)."""
        return {"weight": self.weight}


class Flatten:
    """[B, T, D] -> [B, T*D]."""

    training = True

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.out = x.view(x.shape[0], -1)
        return self.out

    def tensors(self) -> dict[str, torch.Tensor]:
        """Its tensors by attribute name (none for weightless layers)."""
        return {}


class Sequential:
    """Layers applied in order."""

    def __init__(self, layers: list):
        self.layers = layers

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


# Where each canonical weight lives in the layer stack: name -> (layer index, attribute).
_LAYER_SLOTS = {"C": (0, "weight"), "W1": (2, "weight"), "b1": (2, "bias"), "bn_gain": (3, "gain"),
                "bn_bias": (3, "bias"), "bn_mean": (3, "running_mean"), "bn_var": (3, "running_var")}


class LayersBengio(nn.Module):
    """(b) The Bengio MLP as a Sequential of the hand-written layers above; this nn.Module registers their
    tensors (as `l{index}_{attribute}`) so the engine can train and save them, and syncs train/eval mode."""

    lm_kind = "window"

    def __init__(self, vocab_size: int = 27, context_length: int = 3, embedding_dim: int = 10,
                 hidden_dim: int = 200, batch_norm: bool = False, init: str = "kaiming"):
        super().__init__()
        self.vocab_size, self.context_length, self.batch_norm = vocab_size, context_length, batch_norm
        w = init_weights(vocab_size, context_length, embedding_dim, hidden_dim, batch_norm, False, init)
        norm = [BatchNorm1d(w["bn_gain"], w["bn_bias"], w["bn_mean"], w["bn_var"])] if batch_norm else []
        self.net = Sequential([Embedding(w["C"]), Flatten(), Linear(w["W1"], w.get("b1")), *norm, Tanh(),
                               Linear(w["W2"], w["b2"])])
        for index, layer in enumerate(self.net.layers):
            for attr, tensor in layer.tensors().items():
                if attr.startswith("running_"):
                    self.register_buffer(f"l{index}_{attr}", tensor)
                else:
                    self.register_parameter(f"l{index}_{attr}", nn.Parameter(tensor))
        self._link_layers()

    def _link_layers(self) -> None:
        """Point every layer at the module's registered tensors (again after .to() replaced them)."""
        for index, layer in enumerate(self.net.layers):
            for attr in layer.tensors():
                setattr(layer, attr, getattr(self, f"l{index}_{attr}"))

    def _apply(self, fn, *args, **kwargs):
        out = super()._apply(fn, *args, **kwargs)
        self._link_layers()
        return out

    def train(self, mode: bool = True):
        """Set train/eval mode on the module and on every hand-written layer (batch norm reads it)."""
        for layer in self.net.layers:
            layer.training = mode
        return super().train(mode)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """Logits [B, V] for the char after each window idx [B, T]."""
        check_window(idx, self.context_length)
        return self.net(idx)

    def named_weights(self) -> dict[str, torch.Tensor]:
        """The live parameter and buffer tensors under their canonical names."""
        last = len(self.net.layers) - 1
        slots = {**_LAYER_SLOTS, "W2": (last, "weight"), "b2": (last, "bias")}
        if not self.batch_norm:
            slots = {k: v for k, v in slots.items() if not k.startswith("bn_")}
        else:
            slots.pop("b1")
        return {name: getattr(self, f"l{index}_{attr}") for name, (index, attr) in slots.items()}

    def char_embeddings(self) -> torch.Tensor:
        """The embedding table C [V, D]."""
        return self.l0_weight.detach()

    def loss_and_grads(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of windows x [B, T] -> next chars y [B] with every .grad filled by hand."""
        return manual_loss_and_grads(self, x, y)


@register_model("bengio_layers", task="text")
def bengio_layers(vocab_size: int = 27, context_length: int = 3, embedding_dim: int = 10, hidden_dim: int = 200,
                  batch_norm: bool = False, init: str = "kaiming") -> LayersBengio:
    """The Bengio MLP from hand-written Linear/BatchNorm1d/Tanh/Embedding/Flatten/Sequential layers."""
    return LayersBengio(vocab_size, context_length, embedding_dim, hidden_dim, batch_norm, init)
