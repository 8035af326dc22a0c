"""Incremental generation (`init_state` / `step`) gives the logits and the text of full recompute, step by step."""

from __future__ import annotations

import pytest
import torch

from allmlp.data.text import CharTokenizer
from allmlp.generate import (FullRecompute, IncrementalLogits, generate_text, logits_source, sample_id,
                             seeded_generator, start_ids)
from allmlp.models import create_model

TEXT = "the quick brown fox jumps over the lazy dog.\n"
WIDTHS = {"causal_mixer": dict(embedding_dim=16, depth=2, channels_mlp_dim=32, num_heads=2),
          "gmlp": dict(embedding_dim=16, depth=2, ffn_dim=32, num_heads=2)}


def lm(name: str, token_mixing: str, context_length: int, vocab_size: int) -> torch.nn.Module:
    """A small untrained model whose token mixing is large enough that a wrong cache would show in the logits."""
    torch.manual_seed(0)
    model = create_model(name, vocab_size=vocab_size, context_length=context_length, token_mixing=token_mixing,
                         **WIDTHS[name]).eval()
    with torch.no_grad():
        for param_name, param in model.named_parameters():
            if "token_mixing.weight" in param_name:
                param.normal_(0, 2 / context_length ** 0.5)
    return model


@pytest.mark.parametrize("name", ["causal_mixer", "gmlp"])
@pytest.mark.parametrize("token_mixing", ["full", "toeplitz"])
@pytest.mark.parametrize("context_length", [16, 1024])  # the 1,000 chars slide through 16, fit into 1,024
def test_incremental_logits_equal_full_recompute_at_every_step_of_1000_chars(name, token_mixing, context_length):
    tokenizer = CharTokenizer(TEXT)
    model = lm(name, token_mixing, context_length, tokenizer.vocab_size)
    sliding = context_length < 1000
    full, incremental = FullRecompute(model, tokenizer), IncrementalLogits(model, tokenizer)
    history = start_ids(tokenizer, tokenizer.encode("the fox"))
    full.extend(history)
    incremental.extend(history)
    incremental_generator, full_generator = seeded_generator(5), seeded_generator(5)
    got, want = [], []
    with torch.no_grad():
        for _ in range(1000):
            got.append(incremental.logits())
            want.append(full.logits() if sliding else None)
            next_id = sample_id(got[-1], 1.0, generator=incremental_generator)
            incremental.extend([next_id])
            full.extend([next_id])
        if not sliding:  # the whole text fits one window: one pass gives what recomputing every prefix gives
            everything = model(torch.tensor([full.history]))[0]  # (T, V)
            want = list(everything[len(history) - 1:-1])
    assert max(float((g - w).abs().max()) for g, w in zip(got, want)) < 1e-5
    assert torch.stack(got).std(dim=1).min() > 0.05  # the logits are never flat: a mismatch could not hide
    # The same seed samples the same text from the full-recompute logits: each char follows the same history.
    assert [sample_id(w, 1.0, generator=full_generator) for w in want] == full.history[len(history):]


@pytest.mark.parametrize("token_mixing", ["full", "toeplitz"])
def test_generate_text_is_the_same_both_ways_across_line_boundaries(token_mixing):
    tokenizer = CharTokenizer("abcdefgh", boundary="\n")
    model = lm("gmlp", token_mixing, 8, tokenizer.vocab_size)
    with torch.no_grad():
        model.head.bias[tokenizer.boundary_id] += 2.0  # many short lines: the state restarts at each boundary
    kwargs = dict(prompt="abc\ndefgabcdefg", max_new_tokens=300, top_k=5, seed=3)
    text = generate_text(model, tokenizer, **kwargs)
    assert text.count("\n") > 10
    assert text == generate_text(model, tokenizer, **kwargs, full_recompute=True)


def test_the_incremental_path_is_used_when_the_model_has_it(monkeypatch):
    tokenizer = CharTokenizer(TEXT)
    model = lm("causal_mixer", "toeplitz", 8, tokenizer.vocab_size)
    assert isinstance(logits_source(model, tokenizer), IncrementalLogits)
    assert isinstance(logits_source(model, tokenizer, full_recompute=True), FullRecompute)
    calls = []
    monkeypatch.setattr(type(model), "forward", lambda self, idx: calls.append(idx.shape) or 1 / 0)
    assert len(generate_text(model, tokenizer, "the", 50, seed=0)) == 50  # no window was ever run
    assert calls == []
