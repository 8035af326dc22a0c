"""The Bengio MLP: three implementations agree, hand-written gradients match autograd, it learns, it saves."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from allmlp.checkpoint import load_weights, save_weights
from allmlp.models import count_parameters, create_model
from allmlp.models.bengio import copy_weights, manual_loss_and_grads

NAMES = ("bengio", "bengio_raw", "bengio_layers")
SMALL = dict(vocab_size=7, context_length=4, embedding_dim=3, hidden_dim=16)


def three(batch_norm: bool, dtype=torch.float32, **kw):
    """The three implementations with the weights of the first (batch-norm statistics made non-trivial)."""
    torch.manual_seed(0)
    models = [create_model(name, **SMALL, batch_norm=batch_norm, **kw).to(dtype) for name in NAMES]
    perturb(models[0])
    for other in models[1:]:
        copy_weights(models[0], other)
    return models


@torch.no_grad()
def perturb(model) -> None:
    """Move every weight, gain, bias and running statistic away from its initial 1s/0s (variances stay > 0)."""
    for name, tensor in model.named_weights().items():
        tensor.add_(0.3 * torch.randn_like(tensor))
        if name == "bn_var":
            tensor.abs_()


def windows(n: int = 32, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 7, (n, 4), generator=g), torch.randint(0, 7, (n,), generator=g)


def test_parameter_counts_pinned():
    # makemore part 2: 27*10 + 30*200 + 200 + 200*27 + 27 = 11,897
    for name in NAMES:
        assert count_parameters(create_model(name)) == 11_897
    # with batch norm: no hidden bias, plus gain and bias (makemore part 3 counts 12,097)
    assert count_parameters(create_model("bengio", batch_norm=True)) == 11_897 - 200 + 400
    assert count_parameters(create_model("bengio", direct=True)) == 11_897 + 30 * 27


@pytest.mark.parametrize("batch_norm", [False, True])
def test_three_implementations_give_the_same_logits(batch_norm):
    models = three(batch_norm)
    x, _ = windows()
    for mode in ("train", "eval"):
        outs = [getattr(m, mode)()(x) for m in models]
        for out in outs[1:]:
            assert torch.allclose(out, outs[0], atol=1e-6), (mode, (out - outs[0]).abs().max())
    if batch_norm:  # the training-mode pass updated the running statistics identically
        stats = [dict((k, v) for k, v in m.named_weights().items() if k in ("bn_mean", "bn_var")) for m in models]
        for s in stats[1:]:
            for key in s:
                assert torch.allclose(s[key], stats[0][key], atol=1e-6)


def test_same_seed_same_initial_weights():
    for batch_norm in (False, True):
        torch.manual_seed(3)
        a = create_model("bengio", batch_norm=batch_norm).named_weights()
        torch.manual_seed(3)
        b = create_model("bengio_layers", batch_norm=batch_norm).named_weights()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("batch_norm", [False, True])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_manual_gradients_match_autograd(name, batch_norm, mode):
    direct = name != "bengio_layers" and not batch_norm  # direct connections are covered once per module kind
    torch.manual_seed(0)
    model = create_model(name, **SMALL, batch_norm=batch_norm, **({"direct": True} if direct else {})).double()
    perturb(model)
    getattr(model, mode)()
    x, y = windows()
    stats = {k: v.clone() for k, v in model.named_buffers()}
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    expected = {k: p.grad.clone() for k, p in model.named_parameters()}
    after_autograd = {k: v.clone() for k, v in model.named_buffers()}
    model.zero_grad(set_to_none=True)
    with torch.no_grad():
        for key, value in stats.items():
            getattr(model, key).copy_(value)
    manual = manual_loss_and_grads(model, x, y)
    assert abs(manual.item() - loss.item()) < 1e-12
    assert expected.keys() == {k for k, p in model.named_parameters() if p.grad is not None}
    for key, grad in expected.items():
        assert torch.allclose(model.get_parameter(key).grad, grad, atol=1e-6, rtol=0), key
    for key, value in after_autograd.items():  # running statistics updated the same way
        assert torch.allclose(getattr(model, key), value, atol=1e-12), key


def test_manual_backward_adds_to_existing_grads_and_needs_no_graph():
    torch.manual_seed(0)
    model = create_model("bengio", **SMALL)
    x, y = windows()
    loss = manual_loss_and_grads(model, x, y)
    assert not loss.requires_grad
    first = model.W1.grad.clone()
    manual_loss_and_grads(model, x, y)
    assert torch.allclose(model.W1.grad, 2 * first)


@pytest.mark.parametrize("name", NAMES)
def test_learns_a_deterministic_toy_language(name):
    # next char = (sum of the window) mod 7: a function of the context that an MLP can fit
    torch.manual_seed(0)
    model = create_model(name, **{**SMALL, "hidden_dim": 64}, batch_norm=True)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 7, (512, 4), generator=g)
    y = x.sum(1) % 7
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(300):
        opt.zero_grad()
        if name == "bengio_raw":  # one of them trained with the manual backward pass
            manual_loss_and_grads(model, x, y)
        else:
            F.cross_entropy(model(x), y).backward()
        opt.step()
    model.eval()
    assert F.cross_entropy(model(x), y).item() < 0.1  # chance is log(7) = 1.95


@pytest.mark.parametrize("name", NAMES)
def test_safetensors_round_trip_and_char_embeddings(name, tmp_path):
    torch.manual_seed(0)
    model = create_model(name, **SMALL, batch_norm=True)
    model.train()(windows()[0])  # non-trivial running statistics
    save_weights(model, tmp_path / "w.safetensors")
    torch.manual_seed(1)
    fresh = create_model(name, **SMALL, batch_norm=True)
    load_weights(fresh, tmp_path / "w.safetensors")
    x, _ = windows(seed=5)
    assert torch.equal(fresh.eval()(x), model.eval()(x))
    assert fresh.char_embeddings().shape == (7, 3)
    assert type(model).lm_kind == "window" and model.context_length == 4


def test_clear_errors():
    model = create_model("bengio", **SMALL)
    with pytest.raises(ValueError, match=r"shape \[B, 4\]"):
        model(torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="init"):
        create_model("bengio", init="xavier")
    with pytest.raises(ValueError, match="batch_norm"):
        copy_weights(create_model("bengio", **SMALL), create_model("bengio_raw", **SMALL, batch_norm=True))
    with pytest.raises(TypeError, match="not a Bengio MLP"):
        manual_loss_and_grads(torch.nn.Linear(2, 2), *windows())


def test_manual_backprop_trains_through_the_cli_and_reloads(tmp_path):
    # end to end: language task + engine with optim.manual_backprop=true, then the run folder reloads
    from allmlp.checkpoint import load_run, read_metrics
    from allmlp.cli import main

    rng = torch.Generator().manual_seed(0)
    names = ["".join("abcde"[int(i)] for i in torch.randint(0, 5, (3,), generator=rng)) * 2 for _ in range(300)]
    (tmp_path / "names.txt").write_text("\n".join(names) + "\n")  # each name is a 3-char syllable said twice
    run = tmp_path / "run"
    args = ["train", "names_bengio", "data.name=lines", f"data.path={tmp_path / 'names.txt'}", "data.val_lines=30",
            "data.test_lines=30", "data.batch_size=64", "model.name=bengio_layers", "model.batch_norm=true",
            "model.hidden_dim=64", "model.embedding_dim=8", "optim.manual_backprop=true", "train.max_steps=300",
            "train.max_minutes=0", "train.eval_interval=0", "train.log_interval=50", "train.progress=false",
            "--run-dir", str(run)]
    assert main(args) == 0
    train_losses = [r["loss"] for r in read_metrics(run) if r["split"] == "train"]
    val = [r["loss"] for r in read_metrics(run) if r["split"] == "val"][-1]
    # the second half of each name follows from the first: best possible 3 ln 5 / 7 = 0.69 nats, uniform 1.79
    assert train_losses[0] > 1.5 and val < 0.9, (train_losses, val)
    model, cfg, tokenizer = load_run(run)
    assert cfg.optim.manual_backprop and type(model).__name__ == "LayersBengio" and tokenizer.vocab_size == 6
