"""A backward pass written by hand (makemore part 4, "backprop ninja"): every gradient of a Bengio MLP without
autograd."""

from __future__ import annotations

import torch
import torch.nn as nn

from .weights import BN_EPS, BN_MOMENTUM, bengio_inside, check_window


@torch.no_grad()
def manual_loss_and_grads(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of a Bengio MLP on windows x [B, T] -> next chars y [B], with every parameter's
    .grad filled (added to) by hand-derived formulas: no loss.backward(), no autograd. Updates batch-norm
    running statistics in train mode like the forward pass does. One process only: DDP averages autograd's gradients,
    not these (the engine refuses optim.manual_backprop with several devices)."""
    inner = bengio_inside(model)
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
