"""Character Mixers: pinned parameter counts, causal masking, inspection hooks, and a causal Mixer that learns."""

from __future__ import annotations

import pytest
import torch

from allmlp.models import count_parameters, create_model

SMALL = {
    "causal_mixer": dict(vocab_size=10, context_length=8, embedding_dim=16, depth=2, channels_mlp_dim=32, num_heads=2),
    "gmlp": dict(vocab_size=10, context_length=8, embedding_dim=16, depth=2, ffn_dim=32, num_heads=2),
    "chat_mixer": dict(vocab_size=10, context_length=8, embedding_dim=16, depth=2, tokens_mlp_dim=8,
                       channels_mlp_dim=32),
}


@pytest.mark.parametrize("name, small, default", [("causal_mixer", 3050, 625_492), ("gmlp", 2538, 445_524),
                                                  ("chat_mixer", 4170, 329_812)])
def test_parameter_counts_are_pinned(name, small, default):
    assert count_parameters(create_model(name, **SMALL[name])) == small
    with torch.device("meta"):
        assert count_parameters(create_model(name)) == default


@torch.no_grad()
def scramble_token_mixing(model) -> None:
    """Make the near-zero token-mixing weights large, so that a leak across positions would show."""
    for name, param in model.named_parameters():
        if "token_mixing.weight" in name:
            param.normal_(0, 0.5)


@pytest.mark.parametrize("name", ["causal_mixer", "gmlp"])
@pytest.mark.parametrize("heads", [1, 2])
def test_future_chars_never_change_earlier_logits(name, heads):
    torch.manual_seed(0)
    model = create_model(name, **{**SMALL[name], "num_heads": heads}).eval()
    scramble_token_mixing(model)
    x = torch.randint(0, 10, (3, 8))
    logits = model(x)
    assert logits.shape == (3, 8, 10)
    for t in range(8):
        changed = x.clone()
        changed[:, t] = (changed[:, t] + 1) % 10
        other = model(changed)
        assert torch.equal(other[:, :t], logits[:, :t])
        assert (other[:, t] - logits[:, t]).abs().max() > 1e-4  # position t itself does see its char
    assert torch.allclose(model(x[:, :5]), logits[:, :5], atol=1e-6)  # a shorter input = the same prefix


@pytest.mark.parametrize("name", ["causal_mixer", "gmlp", "chat_mixer"])
def test_inspection_hooks(name):
    model = create_model(name, **SMALL[name])
    matrices = model.token_mixing_matrices()
    assert len(matrices) == 2 and model.char_embeddings().shape == (10, 16)
    for matrix in matrices:
        assert matrix.shape[-2:] == (8, 8)
        if model.lm_kind == "causal":
            assert torch.equal(matrix, matrix.tril())


def test_token_mixing_starts_small_and_gate_starts_open():
    model = create_model("gmlp", **SMALL["gmlp"])
    for matrix in model.token_mixing_matrices():
        assert matrix.abs().max() < 0.02
    assert all(torch.all(b.sgu.token_mixing.bias == 1) for b in model.blocks)


def test_chat_mixer_needs_a_full_window():
    model = create_model("chat_mixer", **SMALL["chat_mixer"])
    assert model(torch.zeros(2, 8, dtype=torch.long)).shape == (2, 10)
    with pytest.raises(ValueError, match=r"shape \(B, 8\)"):
        model(torch.zeros(2, 5, dtype=torch.long))


def test_causal_mixer_learns_a_repetitive_text_through_the_cli(tmp_path):
    from allmlp.checkpoint import load_run, read_metrics
    from allmlp.cli import main
    from allmlp.generate import generate_text

    text = tmp_path / "song.txt"
    text.write_text("the cat sat on the mat. " * 200)
    run = tmp_path / "run"
    code = main(["train", "shakespeare_mixer", "data.name=text", f"data.path={text}", "data.context_length=16",
                 "data.batch_size=16", "model.embedding_dim=32", "model.depth=2", "model.channels_mlp_dim=64",
                 "train.max_steps=150", "train.eval_interval=0", "train.checkpoint_interval=0",
                 "train.progress=false", "optim.warmup_steps=20", "optim.lr=1e-2", "--run-dir", str(run)])
    assert code == 0
    final = [r for r in read_metrics(run) if r["split"] == "val"][-1]
    assert final["loss"] < 0.1  # nats per char; uniform over the 11 chars would be 2.4
    model, cfg, tokenizer = load_run(run)
    assert generate_text(model, tokenizer, "the cat ", 16, temperature=0) == "sat on the mat. "
