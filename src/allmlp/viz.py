"""Figures: confusion matrices, token-mixing weights, patch projections, embeddings, curves."""

from __future__ import annotations

from pathlib import Path

import torch


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_confusion_matrix(matrix: torch.Tensor, classes, path: str | Path) -> Path:
    """Confusion matrix (rows: true class, columns: predicted) as a PNG with counts in the cells."""
    plt = _pyplot()
    n = len(classes)
    fig, ax = plt.subplots(figsize=(1.0 + 0.6 * n, 0.8 + 0.6 * n), dpi=100)
    ax.imshow(matrix.numpy(), cmap="Blues")
    ax.set_xticks(range(n), classes, rotation=45, ha="right")
    ax.set_yticks(range(n), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("confusion matrix")
    peak = matrix.max().item() or 1
    for i in range(n):
        for j in range(n):
            value = int(matrix[i, j])
            ax.text(j, i, str(value), ha="center", va="center", fontsize=7,
                    color="white" if value > peak / 2 else "black")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


def _project_2d(weights: torch.Tensor) -> tuple[torch.Tensor, tuple[str, str]]:
    """The rows of `weights` [N, D] in 2-D (as is when D <= 2, else the first two principal components) + axis names."""
    weights = weights.detach().float().cpu()
    if weights.ndim != 2:
        raise ValueError(f"embedding weights must be 2-D [V, D], got shape {tuple(weights.shape)}")
    if weights.shape[1] == 1:
        return torch.cat([weights, torch.zeros_like(weights)], dim=1), ("dim 0", "(1-D embedding)")
    if weights.shape[1] == 2:
        return weights, ("dim 0", "dim 1")
    centered = weights - weights.mean(dim=0, keepdim=True)
    _, _, v = torch.linalg.svd(centered, full_matrices=False)  # rows of v: principal directions
    return centered @ v[:2].T, ("PC 1", "PC 2")


def char_label(char: str) -> str:
    """A printable label for a vocabulary entry (newline, space, tab and other control chars spelled out)."""
    names = {"\n": "\\n", " ": "␣", "\t": "\\t", "\r": "\\r", "\0": "\\0"}
    if char in names:
        return names[char]
    if len(char) == 1 and not char.isprintable():
        return f"\\x{ord(char):02x}"
    return char


def plot_char_embeddings(weights: torch.Tensor, chars, path: str | Path, title: str = "character embeddings") -> Path:
    """2-D scatter of character embeddings [V, D] labelled with their characters (PCA to 2-D when D > 2)."""
    points, (x_name, y_name) = _project_2d(weights)
    if len(chars) != len(points):
        raise ValueError(f"plot_char_embeddings: {len(chars)} characters for {len(points)} embedding rows")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 7), dpi=100)
    ax.scatter(points[:, 0].numpy(), points[:, 1].numpy(), s=160, color="tab:blue", alpha=0.25)
    for (x, y), char in zip(points.tolist(), chars):
        ax.text(x, y, char_label(char), ha="center", va="center", fontsize=9)
    ax.set_xlabel(x_name)
    ax.set_ylabel(y_name)
    ax.set_title(f"{title} (PCA of {weights.shape[1]} dims)" if x_name == "PC 1" else title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path
