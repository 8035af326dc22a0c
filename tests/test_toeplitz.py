"""Toeplitz token mixing: direct and FFT against the materialised lower-triangular matrix, causality, the models."""

from __future__ import annotations

import pytest
import torch

from allmlp.models import count_parameters, create_model
from allmlp.models.toeplitz import FFT_FROM_LENGTH, ToeplitzTokenMixing

SMALL = {"causal_mixer": dict(vocab_size=10, context_length=8, embedding_dim=16, depth=2, channels_mlp_dim=32,
                              num_heads=2),
         "gmlp": dict(vocab_size=10, context_length=8, embedding_dim=16, depth=2, ffn_dim=32, num_heads=2)}


def reference_matrices(lag_weights: torch.Tensor, length: int) -> torch.Tensor:
    """M[h, t, s] = w[h, t - s] for 0 <= t - s < K, written out entry by entry."""
    heads, lags = lag_weights.shape
    rows = []
    for t in range(length):
        rows.append(torch.stack([lag_weights[:, t - s] if 0 <= t - s < lags else lag_weights.new_zeros(heads)
                                 for s in range(length)], dim=-1))
    return torch.stack(rows, dim=1)  # (H, L, L)


@pytest.mark.parametrize("method", ["direct", "fft"])
@pytest.mark.parametrize("length", [1, 5, 12, 30])  # shorter than, equal to and longer than the 12 lags
def test_direct_and_fft_equal_the_materialised_matrix_forward_and_backward(method, length):
    torch.manual_seed(0)
    mixing = ToeplitzTokenMixing(12, num_heads=3, init_std=1.0, init_bias=0.5, method=method)
    x = torch.randn(2, length, 6, requires_grad=True)
    y = mixing(x)
    matrices = reference_matrices(mixing.weight, length)  # (3, L, L), differentiable in the lag weights
    grouped = x.view(2, length, 3, 2).transpose(1, 2)  # (B, H, L, C/H)
    expected = (matrices @ grouped + mixing.bias).transpose(1, 2).reshape(2, length, 6)
    assert (y - expected).abs().max() < 1e-5
    upstream = torch.randn_like(y)
    got = torch.autograd.grad(y, (x, mixing.weight, mixing.bias), upstream)
    want = torch.autograd.grad(expected, (x, mixing.weight, mixing.bias), upstream)
    for g, w in zip(got, want):
        assert (g - w).abs().max() < 1e-5
    assert torch.equal(matrices.tril(), matrices)  # the reference itself is causal


def test_auto_uses_the_fft_from_the_documented_length_and_matrices_are_the_hook():
    mixing = ToeplitzTokenMixing(16, num_heads=2, init_std=1.0)
    assert not mixing.uses_fft(FFT_FROM_LENGTH - 1) and mixing.uses_fft(FFT_FROM_LENGTH)
    assert torch.allclose(mixing.matrices(), reference_matrices(mixing.weight, 16))


@pytest.mark.parametrize("name", ["causal_mixer", "gmlp"])
@pytest.mark.parametrize("method", ["direct", "fft"])
def test_future_chars_never_change_earlier_logits(name, method):
    torch.manual_seed(0)
    model = create_model(name, **SMALL[name], token_mixing="toeplitz", toeplitz_method=method).eval()
    with torch.no_grad():
        for param_name, param in model.named_parameters():
            if "token_mixing.weight" in param_name:
                param.normal_(0, 0.5)  # large lags weights: a leak across positions would show
    x = torch.randint(0, 10, (3, 8))
    logits = model(x)
    for t in range(8):
        changed = x.clone()
        changed[:, t] = (changed[:, t] + 1) % 10
        other = model(changed)
        assert torch.allclose(other[:, :t], logits[:, :t], rtol=0, atol=1e-5)  # the FFT rounds, nothing more
        assert (other[:, t] - logits[:, t]).abs().max() > 1e-3


@pytest.mark.parametrize("name", ["causal_mixer", "gmlp"])
def test_toeplitz_models_run_on_any_length_and_start_like_the_full_ones(name):
    torch.manual_seed(0)
    model = create_model(name, **SMALL[name], token_mixing="toeplitz")
    full = create_model(name, **SMALL[name])
    # One lag vector per head instead of a T x T matrix, a bias per head instead of per position, no positions.
    assert model.position_embedding is None and model.receptive_field == 2 * 7 + 1
    assert count_parameters(full) - count_parameters(model) == 2 * 2 * (8 * 8 - 8 + 8 - 1) + 8 * 16
    for matrix in model.token_mixing_matrices():
        assert matrix.shape == (2, 8, 8) and matrix.abs().max() < 0.02 and torch.equal(matrix, matrix.tril())
    if name == "gmlp":
        assert all(torch.all(block.sgu.token_mixing.bias == 1) for block in model.blocks)  # the gate starts open
    x = torch.randint(0, 10, (2, 20))
    assert model(x).shape == (2, 20, 10)
    assert torch.allclose(model(x[:, :5]), model(x)[:, :5], atol=1e-6)  # a prefix is computed alone


def test_full_mixing_keeps_its_state_dict_keys():
    keys = set(create_model("causal_mixer", **SMALL["causal_mixer"]).state_dict())
    assert "position_embedding" in keys and "blocks.0.token_mixing.weight" in keys
    assert create_model("causal_mixer", **SMALL["causal_mixer"], token_mixing="full").state_dict().keys() == keys


@pytest.mark.parametrize("args, message", [
    (dict(token_mixing="banded"), r"model.token_mixing='banded': expected one of full, toeplitz"),
    (dict(token_mixing="toeplitz", toeplitz_method="fast"), r"model.toeplitz_method='fast': expected one of"),
    (dict(toeplitz_method="fft"), r"model.toeplitz_method=fft needs model.token_mixing=toeplitz"),
])
def test_bad_token_mixing_settings_are_one_line_errors(args, message):
    with pytest.raises(ValueError, match=message):
        create_model("gmlp", **SMALL["gmlp"], **args)
