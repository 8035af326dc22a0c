"""Fitting the Kneser-Ney n-gram model: counting the training split's windows, then the language task's evaluation.

Counting happens when the experiment is built (seconds); training steps then only measure the loss of training
batches (no gradients), so `train.max_steps=0` is the usual setting. The fit writes the table sizes into the
config's model arguments, so the run folder's config.yaml rebuilds a model whose buffers fit model.safetensors.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ..config import Config
from ..data.text import TextBatches
from ..experiment import Experiment
from ..models.protocol import unwrap
from . import language


def window_keys(batches: TextBatches, order: int, vocab_size: int, chunk: int = 1 << 18) -> torch.Tensor:
    """The order-n key (ids as a base-V number) of every (last n-1 chars, next char) window of the stream: (N,)."""
    powers = vocab_size ** torch.arange(order - 1, -1, -1)  # (n,)
    keys = []
    for starts in batches.eval_starts(0).split(chunk):
        x, y = batches.samples(starts)  # (B, T), (B,)
        grams = torch.cat([x[:, x.shape[1] - (order - 1):], y[:, None]], 1)  # (B, n): last n-1 chars + the next
        keys.append((grams * powers).sum(1))
    return torch.cat(keys)


def ney_discount(counts: torch.Tensor) -> float:
    """D = n1 / (n1 + 2 n2) from the numbers of grams seen once and twice; 0.5 when either is zero."""
    once, twice = int((counts == 1).sum()), int((counts == 2).sum())
    return once / (once + 2 * twice) if once and twice else 0.5


def count_tables(batches: TextBatches, vocab_size: int, order: int) -> dict[str, torch.Tensor]:
    """Kneser-Ney tables of a token stream's windows, in the layout of `KneserNeyLM`'s buffers."""
    full_keys, full_counts = torch.unique(window_keys(batches, order, vocab_size), return_counts=True)
    per_order = {order: (full_keys, full_counts)}  # k -> (sorted k-gram keys, counts used at order k)
    distinct = full_keys  # distinct (k+1)-grams, as we go down
    for k in range(order - 1, 0, -1):
        # Continuation count N1+(. g): how many distinct chars precede the k-gram g.
        per_order[k] = torch.unique(distinct % vocab_size ** k, return_counts=True)
        distinct = per_order[k][0]
    gram_keys, gram_counts, context_keys, context_totals, context_types = [], [], [], [], []
    gram_sizes, context_sizes, discounts = [0], [0], []
    for k in range(1, order + 1):
        keys, counts = per_order[k]
        contexts, inverse, types = torch.unique_consecutive(keys // vocab_size, return_inverse=True,
                                                            return_counts=True)
        totals = torch.zeros(len(contexts), dtype=torch.long).index_add_(0, inverse, counts)
        gram_keys.append(keys), gram_counts.append(counts), gram_sizes.append(len(keys))
        context_keys.append(contexts), context_totals.append(totals), context_types.append(types)
        context_sizes.append(len(contexts))
        discounts.append(ney_discount(counts))
    return {"gram_keys": torch.cat(gram_keys), "gram_counts": torch.cat(gram_counts),
            "gram_offsets": torch.tensor(gram_sizes).cumsum(0),
            "context_keys": torch.cat(context_keys), "context_totals": torch.cat(context_totals),
            "context_types": torch.cat(context_types), "context_offsets": torch.tensor(context_sizes).cumsum(0),
            "discounts": torch.tensor(discounts, dtype=torch.float64)}


def build(cfg: Config) -> Experiment:
    """Experiment for the n-gram model: the language task's data and evaluation, counts fitted on train."""
    exp = language.build(cfg)
    model = exp.model
    tables = count_tables(exp.train_batches, model.vocab_size, model.order)
    model.load_counts(tables)
    cfg.model.args.update(num_grams=len(tables["gram_keys"]), num_contexts=len(tables["context_keys"]))

    def loss_fn(wrapped: nn.Module, batch):
        x, y = batch
        with torch.no_grad():
            return language.lm_loss(unwrap(wrapped)(x), y), {}

    exp.loss_fn, exp.manual_backward = loss_fn, True
    return exp


def evaluate_run(model: nn.Module, cfg: Config, run_dir, split: str = "test", tokenizer=None) -> dict:
    """Val / test loss, bits per char and perplexity, as for every language model."""
    return language.evaluate_run(model, cfg, run_dir, split, tokenizer)
