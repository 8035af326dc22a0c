"""Batches computed from (seed, index) alone, so a resumed or multi-process run sees exactly the same data."""

from __future__ import annotations

import math
from typing import Callable, Protocol, Sequence

import torch


class Batches(Protocol):
    """What the engine needs from training data: batch `index` (this rank's share) and the epoch length."""

    steps_per_epoch: int

    def batch(self, index: int, rank: int = 0, world_size: int = 1) -> tuple[torch.Tensor, ...]:
        ...


def split_for_rank(indices: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """This rank's contiguous share of a global batch (the global batch must divide evenly)."""
    if len(indices) % world_size:
        raise ValueError(f"global batch size {len(indices)} is not divisible by {world_size} processes")
    return indices.chunk(world_size)[rank]


def generator_for(*keys: int) -> torch.Generator:
    """A CPU generator seeded from integer keys (seed, step, ...)."""
    seed = 0
    for key in keys:
        seed = (seed * 1_000_003 + int(key)) % (2**63 - 1)
    return torch.Generator().manual_seed(seed)


class TensorBatches:
    """Epoch-wise shuffled mini-batches of in-memory tensors; `transform` augments a batch with a seeded generator."""

    def __init__(self, tensors: Sequence[torch.Tensor], batch_size: int, seed: int = 0,
                 transform: Callable[[tuple[torch.Tensor, ...], torch.Generator], tuple] | None = None):
        self.tensors = tuple(tensors)
        self.num_samples = len(self.tensors[0])
        if any(len(t) != self.num_samples for t in self.tensors):
            raise ValueError("all tensors need the same first dimension")
        if batch_size < 1:
            raise ValueError(f"data.batch_size must be >= 1, got {batch_size}")
        self.batch_size = min(batch_size, self.num_samples)
        self.seed = seed
        self.transform = transform
        self.steps_per_epoch = max(1, self.num_samples // self.batch_size)
        self._epoch, self._perm = -1, None

    def _permutation(self, epoch: int) -> torch.Tensor:
        if epoch != self._epoch:
            self._epoch = epoch
            self._perm = torch.randperm(self.num_samples, generator=generator_for(self.seed, epoch))
        return self._perm

    def batch(self, index: int, rank: int = 0, world_size: int = 1) -> tuple[torch.Tensor, ...]:
        """Mini-batch number `index` counted from the start of training (this rank's share)."""
        epoch, position = divmod(index, self.steps_per_epoch)
        chosen = self._permutation(epoch)[position * self.batch_size:(position + 1) * self.batch_size]
        chosen = split_for_rank(chosen, rank, world_size)
        out = tuple(t[chosen] for t in self.tensors)
        if self.transform is not None:
            out = self.transform(out, generator_for(self.seed, index, rank, 1))
        return out


def iterate_in_order(tensors: Sequence[torch.Tensor], batch_size: int):
    """Yield consecutive slices of the tensors (for evaluation)."""
    n = len(tensors[0])
    for i in range(math.ceil(n / batch_size)):
        yield tuple(t[i * batch_size:(i + 1) * batch_size] for t in tensors)
