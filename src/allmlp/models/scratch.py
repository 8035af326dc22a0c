"""The Bengio MLP twice more, from scratch: raw tensor ops and hand-written layers (makemore part 3), plus a
manual backward pass that fills every gradient without autograd (makemore part 4, "backprop ninja").

Both models are nn.Modules only so the engine, DDP and safetensors checkpoints can hold them: their weights
are registered as parameters, but their forward passes are written with plain tensor arithmetic (`bengio_raw`)
or with the hand-written layer classes below (`bengio_layers`), never with torch.nn layers or torch.nn.functional.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from . import register_model
from .char_mlp import BN_EPS, BN_MOMENTUM, check_window, hold_weights, init_weights


def _batch_norm(h: torch.Tensor, gain, bias, running_mean, running_var, training: bool) -> torch.Tensor:
    """Batch norm written out: batch statistics (biased variance) in training, running statistics in eval."""
    if training:
        mean = h.mean(0)  # (H,)
        var = ((h - mean) ** 2).mean(0)  # (H,)
        with torch.no_grad():  # running variance is unbiased, as torch keeps it
            n = h.shape[0]
            running_mean.mul_(1 - BN_MOMENTUM).add_(BN_MOMENTUM * mean)
            running_var.mul_(1 - BN_MOMENTUM).add_(BN_MOMENTUM * var * n / (n - 1))
    else:
        mean, var = running_mean, running_var
    return gain * (h - mean) / torch.sqrt(var + BN_EPS) + bias


class RawTensorsBengio(nn.Module):
    """(a) The Bengio MLP from raw tensors: weights are tensors with requires_grad, forward is indexing,
    matmul and tanh (makemore part 2); nn.Module only so the engine and checkpoints can hold it."""

    lm_kind = "window"

    def __init__(self, vocab_size: int = 27, context_length: int = 3, embedding_dim: int = 10,
                 hidden_dim: int = 200, batch_norm: bool = False, direct: bool = False, init: str = "kaiming"):
        super().__init__()
        self.vocab_size, self.context_length = vocab_size, context_length
        self.batch_norm, self.direct = batch_norm, direct
        hold_weights(self, init_weights(vocab_size, context_length, embedding_dim, hidden_dim, batch_norm, direct,
                                        init))

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """Logits [B, V] for the char after each window idx [B, T]."""
        check_window(idx, self.context_length)
        emb = self.C[idx].view(idx.shape[0], -1)  # (B, T*D)
        h = emb @ self.W1  # (B, H)
        if self.batch_norm:
            h = _batch_norm(h, self.bn_gain, self.bn_bias, self.bn_mean, self.bn_var, self.training)
        else:
            h = h + self.b1
        logits = torch.tanh(h) @ self.W2 + self.b2  # (B, V)
        if self.direct:
            logits = logits + emb @ self.W_direct
        return logits

    def named_weights(self) -> dict[str, torch.Tensor]:
        """The live parameter and buffer tensors under their canonical names."""
        return {**dict(self.named_parameters()), **dict(self.named_buffers())}

    def char_embeddings(self) -> torch.Tensor:
        """The embedding table C [V, D]."""
        return self.C.detach()


# --- (b) hand-written layers, as in makemore part 3 ---------------------------------------------------------

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
        self.out = _batch_norm(x, self.gain, self.bias, self.running_mean, self.running_var, self.training)
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


@register_model("bengio_raw", task="text")
def bengio_raw(vocab_size: int = 27, context_length: int = 3, embedding_dim: int = 10, hidden_dim: int = 200,
               batch_norm: bool = False, direct: bool = False, init: str = "kaiming") -> RawTensorsBengio:
    """The Bengio MLP from raw tensor ops (same weights and names as `bengio`)."""
    return RawTensorsBengio(vocab_size, context_length, embedding_dim, hidden_dim, batch_norm, direct, init)


@register_model("bengio_layers", task="text")
def bengio_layers(vocab_size: int = 27, context_length: int = 3, embedding_dim: int = 10, hidden_dim: int = 200,
                  batch_norm: bool = False, init: str = "kaiming") -> LayersBengio:
    """The Bengio MLP from hand-written Linear/BatchNorm1d/Tanh/Embedding/Flatten/Sequential layers."""
    return LayersBengio(vocab_size, context_length, embedding_dim, hidden_dim, batch_norm, init)


# --- moving weights between the three ---------------------------------------------------------------------

def _bengio_inside(model: nn.Module) -> nn.Module:
    """The Bengio implementation under any Fabric/DDP/compile wrappers, or a one-line error."""
    from ..checkpoint import unwrap

    inner = unwrap(model)
    if not hasattr(inner, "named_weights"):
        raise TypeError(f"{type(inner).__name__} is not a Bengio MLP (bengio, bengio_raw or bengio_layers)")
    return inner


@torch.no_grad()
def copy_weights(source: nn.Module, target: nn.Module) -> nn.Module:
    """Copy every weight and batch-norm statistic of one Bengio implementation into another (any of the three)."""
    src, dst = _bengio_inside(source).named_weights(), _bengio_inside(target).named_weights()
    if set(src) != set(dst):
        raise ValueError(f"copy_weights: different layouts ({', '.join(sorted(set(src) ^ set(dst)))} "
                         "present in only one): match batch_norm and direct")
    for name, tensor in dst.items():
        if tensor.shape != src[name].shape:
            raise ValueError(f"copy_weights: {name} has shape {tuple(src[name].shape)} in the source and "
                             f"{tuple(tensor.shape)} in the target")
        tensor.copy_(src[name])
    return target


# --- manual backward -----------------------------------------------------------------------------------------

@torch.no_grad()
def manual_loss_and_grads(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of a Bengio MLP on windows x [B, T] -> next chars y [B], with every parameter's
    .grad filled (added to) by hand-derived formulas: no loss.backward(), no autograd. Updates batch-norm
    running statistics in train mode like the forward pass does. One process only: DDP averages autograd's gradients,
    not these (the engine refuses optim.manual_backprop with several devices)."""
    inner = _bengio_inside(model)
    w, training = inner.named_weights(), inner.training
    B = x.shape[0]
    check_window(x, inner.context_length)
    # forward, keeping what the backward pass needs
    emb = w["C"][x].view(B, -1)  # (B, T*D)
    hpre = emb @ w["W1"]  # (B, H)
    if "bn_gain" in w:
        if training:
            mean = hpre.mean(0)
            centered = hpre - mean  # (B, H)
            var = (centered ** 2).mean(0)
            w["bn_mean"].mul_(1 - BN_MOMENTUM).add_(BN_MOMENTUM * mean)
            w["bn_var"].mul_(1 - BN_MOMENTUM).add_(BN_MOMENTUM * var * B / (B - 1))
        else:
            centered, var = hpre - w["bn_mean"], w["bn_var"]
        inv_std = (var + BN_EPS) ** -0.5  # (H,)
        xhat = centered * inv_std  # (B, H)
        hbn = w["bn_gain"] * xhat + w["bn_bias"]
    else:
        hbn = hpre + w["b1"]
    h = torch.tanh(hbn)  # (B, H)
    logits = h @ w["W2"] + w["b2"]  # (B, V)
    if "W_direct" in w:
        logits = logits + emb @ w["W_direct"]
    logprobs = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    loss = -logprobs[torch.arange(B), y].mean()

    # backward: softmax + cross-entropy, output layer, tanh, batch norm, hidden layer, embedding scatter-add
    grads = {}
    dlogits = logprobs.exp()
    dlogits[torch.arange(B), y] -= 1
    dlogits /= B  # (B, V)
    grads["W2"] = h.T @ dlogits
    grads["b2"] = dlogits.sum(0)
    dhbn = (1 - h ** 2) * (dlogits @ w["W2"].T)  # (B, H)
    if "bn_gain" in w:
        grads["bn_gain"] = (xhat * dhbn).sum(0)
        grads["bn_bias"] = dhbn.sum(0)
        if training:  # the batch statistics depend on every row: makemore's one-line batch-norm backward
            dhpre = w["bn_gain"] * inv_std / B * (B * dhbn - dhbn.sum(0) - xhat * (dhbn * xhat).sum(0))
        else:
            dhpre = dhbn * w["bn_gain"] * inv_std
    else:
        grads["b1"] = dhbn.sum(0)
        dhpre = dhbn
    grads["W1"] = emb.T @ dhpre
    demb = dhpre @ w["W1"].T  # (B, T*D)
    if "W_direct" in w:
        grads["W_direct"] = emb.T @ dlogits
        demb = demb + dlogits @ w["W_direct"].T
    grads["C"] = torch.zeros_like(w["C"]).index_add_(0, x.reshape(-1), demb.view(x.numel(), -1))

    for name, grad in grads.items():
        param = w[name]
        param.grad = grad if param.grad is None else param.grad + grad
    return loss
