"""Shared fixtures: tiny data sets the tests write themselves, and one CPU thread per test process (and run)."""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

torch.set_num_threads(1)
os.environ["OMP_NUM_THREADS"] = "1"  # the engine's thread rule (train.threads=0) honours it, as do subprocesses


def write_idx(path: Path, array: np.ndarray, compress: bool = True) -> Path:
    """Write `array` (uint8) as an IDX file, gzipped when `compress`."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


def separable_images(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """28x28 images whose class (0..3) is the row band holding a bright bar, plus noise.

    The bar is centred left to right, so a mirrored image keeps its class (flip augmentation and test-time flip
    are fair on it).
    """
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, n)
    images = rng.integers(0, 60, (n, 28, 28))
    for i, label in enumerate(labels):
        images[i, int(label) * 7 + 1:int(label) * 7 + 6, 6:22] += 180
    return images.clip(0, 255).astype(np.uint8), labels.astype(np.uint8)


def write_tiny_fashion(folder: Path, train: int = 512, test: int = 256) -> Path:
    """Fashion-MNIST-named IDX files in `folder` holding a small learnable 4-class task."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, n, seed in (("train", train, 0), ("t10k", test, 1)):
        images, labels = separable_images(n, seed)
        write_idx(folder / f"{split}-images-idx3-ubyte", images)
        write_idx(folder / f"{split}-labels-idx1-ubyte", labels)
    return folder


def write_tiny_cifar(folder: Path, per_train_batch: int = 8, test: int = 40) -> Path:
    """CIFAR-10 python-pickle batches (data_batch_1..5, test_batch) of random images in `folder`."""
    import pickle

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        labels = rng.integers(0, 10, per_train_batch if name.startswith("data") else test)
        data = rng.integers(0, 256, (len(labels), 3 * 32 * 32)).astype(np.uint8)
        batch = {b"batch_label": name.encode(), b"labels": labels.tolist(), b"data": data,
                 b"filenames": [f"{i}.png".encode() for i in range(len(labels))]}
        (folder / name).write_bytes(pickle.dumps(batch))
    return folder


@pytest.fixture
def tiny_fashion(tmp_path) -> Path:
    """A folder with Fashion-MNIST-named IDX files holding a small learnable 4-class task."""
    return write_tiny_fashion(tmp_path / "fashion")


@pytest.fixture
def tiny_cifar(tmp_path) -> Path:
    """A folder of CIFAR-10 python-pickle batches (data_batch_1..5, test_batch) with 40 / 40 random images."""
    return write_tiny_cifar(tmp_path / "cifar")


# A quiet run of a few steps: no evaluations or checkpoints before the end, no progress bar.
TINY_BUDGET = ["train.max_steps=2", "train.max_epochs=0", "train.max_minutes=0", "train.eval_interval=0",
               "train.checkpoint_interval=0", "train.log_interval=1", "train.progress=false"]
# Per preset, a model small enough to train in a second (a test's own words come after and win).
TINY_MODELS = {
    "fashion_mixer": ["model.depth=2", "model.hidden_dim=16", "model.tokens_mlp_dim=8", "model.channels_mlp_dim=16",
                      "model.patch_size=7", "data.batch_size=32"],
    "shakespeare_mixer": ["model.context_length=8", "model.embedding_dim=8", "model.depth=2",
                          "model.channels_mlp_dim=8", "model.num_heads=2", "data.context_length=8",
                          "data.batch_size=8", "optim.warmup_steps=1"],
}


@pytest.fixture
def tiny_run():
    """`tiny_run(folder, preset, *overrides)`: train `preset` with a tiny model and budget through `allmlp train`
    into folder/run (overrides win over the tiny defaults); returns the run folder."""
    from allmlp.cli import main

    def train(folder: Path, preset: str, *overrides: str) -> Path:
        run = Path(folder) / "run"
        code = main(["train", preset, *TINY_BUDGET, *TINY_MODELS.get(preset, []), *overrides, "--run-dir", str(run)])
        assert code == 0, f"allmlp train {preset} exited {code}"
        return run

    return train
