"""Interpolated Kneser-Ney character n-gram model: the count baseline every neural language model must beat.

A window language model like the others (`forward(idx [B, n-1])` -> log-probabilities [B, V]), so `allmlp eval`,
`generate` and `chat` take its run folder as is. It holds counts, not weights: per order k = 1..n the sorted
k-gram keys (ids as a base-V number) with their counts (raw counts at order n, Kneser-Ney continuation counts
N1+(. g) below), and per (k-1)-char context its total and number of distinct next chars. The tables are buffers,
so safetensors saves them; their sizes are model arguments, filled in by the fit (tasks/ngram.py).

P_k(w | h) = (max(c_k(h w) - D_k, 0) + D_k * N1+(h .) * P_{k-1}(w | h')) / c_k(h .),  h' = h without its first char,
falling back to P_{k-1} for a context never seen; P_0 is uniform over the vocabulary (Chen & Goodman 1998, eq. 26).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from . import register_model


class KneserNeyLM(nn.Module):
    """Interpolated Kneser-Ney over chars; `order` n uses the previous n-1 chars (at least one is always fed)."""

    lm_kind = "window"

    def __init__(self, vocab_size: int, order: int, num_grams: int = 0, num_contexts: int = 0):
        super().__init__()
        if order < 1 or vocab_size < 1:
            raise ValueError(f"ngram: order ({order}) and vocab_size ({vocab_size}) must be >= 1")
        if vocab_size ** order >= 2 ** 62:
            raise ValueError(f"ngram: order {order} over {vocab_size} chars overflows 64-bit n-gram keys")
        self.vocab_size, self.order = vocab_size, order
        self.context_length = max(order - 1, 1)  # the window protocol needs one char even for a unigram
        # Holds no weights; generation and evaluation ask parameters() for the device.
        self.device_anchor = nn.Parameter(torch.zeros(0), requires_grad=False)
        self.register_buffer("gram_keys", torch.zeros(num_grams, dtype=torch.long))  # sorted within each order
        self.register_buffer("gram_counts", torch.zeros(num_grams, dtype=torch.long))
        self.register_buffer("gram_offsets", torch.zeros(order + 1, dtype=torch.long))  # order k: [off[k-1], off[k])
        self.register_buffer("context_keys", torch.zeros(num_contexts, dtype=torch.long))
        self.register_buffer("context_totals", torch.zeros(num_contexts, dtype=torch.long))  # c_k(h .)
        self.register_buffer("context_types", torch.zeros(num_contexts, dtype=torch.long))  # N1+(h .)
        self.register_buffer("context_offsets", torch.zeros(order + 1, dtype=torch.long))
        self.register_buffer("discounts", torch.full((order,), 0.5, dtype=torch.float64))  # D_k, k = 1..n

    def load_counts(self, tables: dict[str, torch.Tensor]) -> None:
        """Replace the count tables (as made by tasks.ngram.count_tables); table sizes may change."""
        for name, buffer in list(self.named_buffers()):
            if name not in tables:
                raise KeyError(f"ngram: count table {name!r} is missing")
            setattr(self, name, tables[name].to(buffer.dtype))

    @staticmethod
    def _lookup(keys: torch.Tensor, values: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
        """values[i] where keys[i] == query (keys sorted), else 0; any query shape."""
        if len(keys) == 0:
            return torch.zeros_like(queries)
        position = torch.searchsorted(keys, queries).clamp(max=len(keys) - 1)
        return torch.where(keys[position] == queries, values[position], torch.zeros_like(queries))

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """(B, T) ids -> (B, V) log-probabilities of the next char, from the last n-1 of them."""
        if idx.ndim != 2 or idx.shape[1] != self.context_length:
            raise ValueError(f"expected char ids of shape (B, {self.context_length}), got {tuple(idx.shape)}")
        batch, vocab = len(idx), self.vocab_size
        idx = idx.long()
        next_chars = torch.arange(vocab, device=idx.device)
        probs = torch.full((batch, vocab), 1.0 / vocab, dtype=torch.float64, device=idx.device)  # (B, V): P_0
        for k in range(1, self.order + 1):
            history = idx[:, idx.shape[1] - (k - 1):]  # (B, k-1): the last k-1 chars, none for k = 1
            powers = vocab ** torch.arange(k - 2, -1, -1, device=idx.device)  # (k-1,)
            context_key = (history * powers).sum(1)  # (B,)
            lo, hi = self.context_offsets[k - 1], self.context_offsets[k]
            keys = self.context_keys[lo:hi]
            total = self._lookup(keys, self.context_totals[lo:hi], context_key).double()  # (B,)
            types = self._lookup(keys, self.context_types[lo:hi], context_key).double()  # (B,)
            lo, hi = self.gram_offsets[k - 1], self.gram_offsets[k]
            gram_key = context_key[:, None] * vocab + next_chars  # (B, V)
            counts = self._lookup(self.gram_keys[lo:hi], self.gram_counts[lo:hi], gram_key).double()  # (B, V)
            discount = self.discounts[k - 1]
            interpolated = ((counts - discount).clamp(min=0) + discount * types[:, None] * probs) \
                / total.clamp(min=1)[:, None]
            probs = torch.where(total[:, None] > 0, interpolated, probs)  # unseen context: the lower order alone
        return probs.log().float()


@register_model("ngram", task="ngram")
def ngram(vocab_size: int = 27, order: int = 5, num_grams: int = 0, num_contexts: int = 0) -> KneserNeyLM:
    """Interpolated Kneser-Ney n-gram model fitted by counting (`num_grams`/`num_contexts` are set by the fit)."""
    return KneserNeyLM(vocab_size, order, num_grams, num_contexts)
