"""Figures as PNGs: confusion matrices, mixing weights, patch projections, embeddings, link functions, curves."""

from __future__ import annotations

import io
import math
from pathlib import Path

import torch


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _suptitle(fig, text: str, fontsize: float = 10) -> None:
    """A figure title wrapped onto as many lines as the figure's width needs (a one-panel figure would clip it)."""
    import textwrap

    chars_per_line = max(20, int(fig.get_figwidth() * 72 / (0.55 * fontsize)))  # about 0.55 em a character
    fig.suptitle(textwrap.fill(text, chars_per_line), fontsize=fontsize)


def _save(fig, path: str | Path) -> Path:
    """Write a matplotlib figure as a palette PNG (about 3x smaller, same look) and free it."""
    from PIL import Image

    plt = _pyplot()
    path = Path(path)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    image = Image.open(buffer).convert("RGB")
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(path, format="png", optimize=True)
    return path


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
    return _save(fig, path)


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


def char_embedding_figure(weights: torch.Tensor, chars, title: str = "character embeddings", priority=None):
    """2-D scatter of character embeddings [V, D] (PCA when D > 2); labels never overlap: where points crowd, the
    chars first in `priority` (e.g. the most frequent; default: the farthest from the centre) keep theirs."""
    points, (x_name, y_name) = _project_2d(weights)
    if len(chars) != len(points):
        raise ValueError(f"plot_char_embeddings: {len(chars)} characters for {len(points)} embedding rows")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 7), dpi=100)
    xy = points.numpy()
    ax.scatter(xy[:, 0], xy[:, 1], s=12, color="tab:blue", alpha=0.5)
    low, high = xy.min(0), xy.max(0)
    margin = (high - low) * 0.06 + 1e-6
    ax.set_xlim(low[0] - margin[0], high[0] + margin[0])
    ax.set_ylim(low[1] - margin[1], high[1] + margin[1])
    ax.set_xlabel(x_name)
    ax.set_ylabel(y_name)
    ax.grid(alpha=0.3)
    labels = [char_label(c) for c in chars]
    ax.set_title("title placeholder")
    fig.tight_layout()  # the axes' final place, so each label's extent in pixels is known when choosing which fit
    if priority is None:
        priority = (points - points.mean(0)).norm(dim=1).argsort(descending=True).tolist()
    renderer, placed = fig.canvas.get_renderer(), []
    for index in priority:
        text = ax.annotate(labels[index], xy[index], xytext=(2, 2), textcoords="offset points", fontsize=9)
        box = text.get_window_extent(renderer).expanded(1.1, 1.1)
        if any(box.overlaps(other) for other in placed):
            text.remove()
        else:
            placed.append(box)
    what = f"PCA of {weights.shape[1]} dims" if x_name == "PC 1" else ""
    crowded = f"{len(placed)} of {len(labels)} labelled where they fit" if len(placed) < len(labels) else ""
    detail = "; ".join(part for part in (what, crowded) if part)
    ax.set_title(f"{title} ({detail})" if detail else title)
    return fig


def plot_char_embeddings(weights: torch.Tensor, chars, path: str | Path, title: str = "character embeddings",
                         priority=None) -> Path:
    """Character embeddings [V, D] as a labelled 2-D scatter PNG (see `char_embedding_figure`)."""
    return _save(char_embedding_figure(weights, chars, title, priority), path)


def _grid_shape(count: int, max_cols: int = 8) -> tuple[int, int]:
    """(rows, cols) of a near-square grid holding `count` panels."""
    cols = min(max_cols, max(1, math.ceil(math.sqrt(count))))
    return math.ceil(count / cols), cols


def tile_images(images: torch.Tensor, max_tiles: int = 64, pad: int = 1, symmetric: bool = False) -> torch.Tensor:
    """Tile images [N, H, W] (or [N, 3, H, W]) into one mosaic [H', W'] (or [3, H', W']) of values in [0, 1].

    Each tile is scaled on its own: min..max -> 0..1, or with `symmetric` -max|w|..max|w| -> 0..1 so that a zero
    weight lands on 0.5 (white in a diverging colormap, as are the separators then); else separators are 1.
    """
    images = images[:max_tiles].detach().float().cpu()
    color = images.ndim == 4
    if not color:
        images = images.unsqueeze(1)  # (N, 1, H, W)
    flat = images.flatten(1)
    if symmetric:
        limit = flat.abs().max(1).values.clamp(min=1e-12).view(-1, 1, 1, 1)
        images = (images / limit + 1) / 2
    else:
        low, high = flat.min(1).values.view(-1, 1, 1, 1), flat.max(1).values.view(-1, 1, 1, 1)
        images = (images - low) / (high - low).clamp(min=1e-12)
    n, c, h, w = images.shape
    rows, cols = _grid_shape(n)
    mosaic = torch.full((c, rows * (h + pad) + pad, cols * (w + pad) + pad), 0.5 if symmetric else 1.0)
    for i in range(n):
        top, left = pad + (i // cols) * (h + pad), pad + (i % cols) * (w + pad)
        mosaic[:, top:top + h, left:left + w] = images[i]
    return mosaic if color else mosaic[0]


def token_mixing_figure(units_per_layer: list[torch.Tensor], title: str = "token-mixing weights"):
    """One panel per layer; each panel tiles the layer's hidden units [U, gh, gw] reshaped to the patch grid."""
    plt = _pyplot()
    rows, cols = _grid_shape(len(units_per_layer), max_cols=4)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.4 * rows + 0.4), dpi=100, squeeze=False)
    for ax in axes.flat[len(units_per_layer):]:
        ax.remove()
    for i, (ax, units) in enumerate(zip(axes.flat, units_per_layer)):
        ax.imshow(tile_images(units, symmetric=True).numpy(), cmap="RdBu_r", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(f"layer {i + 1}: {min(len(units), 64)} of {len(units)} units", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    _suptitle(fig, f"{title} (each tile: one hidden unit over the {tuple(units_per_layer[0].shape[1:])} patch grid)")
    fig.tight_layout()
    return fig


def plot_token_mixing_patches(units_per_layer: list[torch.Tensor], path: str | Path) -> Path:
    """Vision token-mixing weights as in the Mixer paper: per layer, every hidden unit on the patch grid."""
    return _save(token_mixing_figure(units_per_layer), path)


def heads_side_by_side(matrix: torch.Tensor) -> torch.Tensor:
    """[T, T] as is; [heads, T, T] -> [T, heads * (T + 1) - 1] with a NaN (blank) column between heads."""
    matrix = matrix.detach().float().cpu()
    if matrix.ndim == 2:
        return matrix
    gap = torch.full((matrix.shape[1], 1), float("nan"))
    parts = [part for head in matrix for part in (head, gap)][:-1]
    return torch.cat(parts, dim=1)


def mixing_matrix_figure(matrices: list[torch.Tensor], title: str = "token-mixing matrices"):
    """One panel per layer of [T, T] (grid) or [heads, T, T] (one row per layer, heads side by side) weights."""
    plt = _pyplot()
    heads = max(m.shape[0] if m.ndim == 3 else 1 for m in matrices)
    if heads > 1:
        rows, cols, size = len(matrices), 1, (1.2 + 2.4 * heads, 2.6 * len(matrices) + 0.5)
    else:
        rows, cols = _grid_shape(len(matrices), max_cols=4)
        size = (3.4 * cols, 3.4 * rows + 0.4)
    fig, axes = plt.subplots(rows, cols, figsize=size, dpi=100, squeeze=False)
    for ax in axes.flat[len(matrices):]:
        ax.remove()
    for i, (ax, matrix) in enumerate(zip(axes.flat, matrices)):
        shown = heads_side_by_side(matrix)  # (T, T) or (T, heads * (T + 1) - 1)
        limit = shown.nan_to_num().abs().max().item() or 1.0
        ax.imshow(shown.numpy(), cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
        ax.set_title(f"layer {i + 1}" + (f" ({matrix.shape[0]} heads)" if matrix.ndim == 3 else ""), fontsize=9)
        if matrix.ndim == 3:
            t = matrix.shape[-1]
            ax.set_xticks([h * (t + 1) + (t - 1) / 2 for h in range(matrix.shape[0])],
                          [f"head {h + 1}" for h in range(matrix.shape[0])])
            ax.set_xlabel(f"source position (0..{t - 1} within each head)")
        else:
            ax.set_xlabel("source position")
        ax.set_ylabel("target position")
    _suptitle(fig, f"{title} (red positive, blue negative)")
    fig.tight_layout()
    return fig


def plot_token_mixing_matrices(matrices: list[torch.Tensor], path: str | Path) -> Path:
    """Text token-mixing matrices per layer (causal ones are lower-triangular) as one PNG."""
    return _save(mixing_matrix_figure(matrices), path)


def patch_filter_images(weight: torch.Tensor) -> torch.Tensor:
    """Patch-embedding conv weights [C, in, p, p] as images: RGB [C, 3, p, p] for 3 input channels, else [C, p, p]."""
    weight = weight.detach().float().cpu()
    return weight if weight.shape[1] == 3 else weight.mean(dim=1)


def plot_patch_filters(weight: torch.Tensor, path: str | Path, max_filters: int = 64) -> Path:
    """The learned linear projections of the patches (the stem's conv filters) as an image grid."""
    plt = _pyplot()
    mosaic = tile_images(patch_filter_images(weight), max_tiles=max_filters)
    fig, ax = plt.subplots(figsize=(6, 6.3), dpi=100)
    ax.imshow(mosaic.permute(1, 2, 0).numpy() if mosaic.ndim == 3 else mosaic.numpy(), cmap="gray",
              interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    shown = min(max_filters, weight.shape[0])
    ax.set_title(f"patch projections: {shown} of {weight.shape[0]} filters ({weight.shape[2]}x{weight.shape[3]} px)")
    fig.tight_layout()
    return _save(fig, path)


MAX_EDGE_LINES = 24  # more segment edges than this are marked as ticks, not lines


def link_function_figure(x: torch.Tensor, y: torch.Tensor, edges: torch.Tensor | None = None,
                         title: str = "link functions", max_links: int = 16):
    """Small multiples of a piecewise polynomial layer's links y [out, in, P] over x [P], segment edges dashed."""
    plt = _pyplot()
    x, y = x.detach().float().cpu(), y.detach().float().cpu()
    pairs = [(o, i) for o in range(y.shape[0]) for i in range(y.shape[1])][:max_links]
    rows, cols = _grid_shape(len(pairs), max_cols=4)
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.1 * rows + 0.5), dpi=100, squeeze=False)
    for ax in axes.flat[len(pairs):]:
        ax.remove()
    edge_list = [] if edges is None else edges.detach().float().cpu().tolist()
    for ax, (o, i) in zip(axes.flat, pairs):
        ax.plot(x.numpy(), y[o, i].numpy(), color="tab:blue", linewidth=1.0)
        if len(edge_list) <= MAX_EDGE_LINES:
            for edge in edge_list:
                ax.axvline(edge, color="gray", linestyle="--", linewidth=0.6)
        else:  # dozens of segments: a rug of edge marks under the curve instead of a wall of lines
            ax.plot(edge_list, [y[o, i].min().item()] * len(edge_list), "|", color="gray", markersize=4)
        ax.set_title(f"in {i} -> out {o}", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes[-1]:
        ax.set_xlabel("input", fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel("output", fontsize=8)
    marks = "dashed" if len(edge_list) <= MAX_EDGE_LINES else "ticks at the bottom"
    fig.suptitle(f"{title} ({len(pairs)} of {y.shape[0] * y.shape[1]} links; {marks}: segment edges)", fontsize=10)
    fig.tight_layout()
    return fig


def plot_link_functions(x: torch.Tensor, y: torch.Tensor, edges: torch.Tensor | None, path: str | Path,
                        title: str = "link functions") -> Path:
    """Learned piecewise polynomial link functions with segment boundaries marked, as a PNG."""
    return _save(link_function_figure(x, y, edges, title), path)


CURVE_METRICS = ("loss", "acc", "bpc")  # what the curves figure plots, when the run logged it
# --x choices and their axis labels
X_AXES = {"step": "step", "samples": "samples seen", "time": "wall time (s, rebuilt from samples/s)"}
SPLIT_STYLES = {"train": "-", "val": "--", "test": ":", "val_ema": "-."}  # val_ema: the EMA of the weights


def step_to_x(records: list[dict], x: str = "step", step_samples: int = 0):
    """A function mapping a logged step to the chosen x axis: the step, samples seen, or seconds of wall time.

    Wall time is rebuilt from the train records' samples_per_sec (metrics.jsonl logs no clock): each logging window
    lasted (steps in it x samples per step) / samples_per_sec seconds, evaluations included.
    """
    import numpy as np

    if x == "step":
        return lambda step: float(step)
    if x not in X_AXES:
        raise ValueError(f"--x {x}: expected one of {', '.join(X_AXES)}")
    if step_samples <= 0:
        raise ValueError(f"--x {x} needs the samples per step (data.batch_size) of the run")
    if x == "samples":
        return lambda step: float(step) * step_samples
    steps, seconds = [0.0], [0.0]
    for record in sorted((r for r in records if r.get("split") == "train"), key=lambda r: r["step"]):
        rate = record.get("samples_per_sec")
        if not rate or record["step"] <= steps[-1]:
            continue
        seconds.append(seconds[-1] + (record["step"] - steps[-1]) * step_samples / rate)
        steps.append(float(record["step"]))
    if len(steps) == 1:
        raise ValueError("--x time: metrics.jsonl has no train records with samples_per_sec to rebuild the clock from")
    return lambda step: float(np.interp(step, steps, seconds))


def curves_figure(runs: dict[str, list[dict]], title: str = "training curves", x: str = "step",
                  step_samples: int | dict[str, int] = 0):
    """Loss (and accuracy / bits per char when logged) of one or more runs against step, samples seen or wall time.

    The legend sits under the panels (colour: run, line style: split, when several runs); a series of fewer than
    30 points marks each one, so a single logged value is still seen.
    """
    from matplotlib.lines import Line2D

    plt = _pyplot()
    present = [m for m in CURVE_METRICS if any(m in r for records in runs.values() for r in records)]
    if not present:
        raise ValueError("no loss, acc or bpc records to plot (is metrics.jsonl empty?)")
    per_run = step_samples if isinstance(step_samples, dict) else dict.fromkeys(runs, step_samples)
    to_x = {name: step_to_x(records, x, per_run.get(name, 0)) for name, records in runs.items()}
    fig, axes = plt.subplots(1, len(present), figsize=(5.2 * len(present), 4.6 + 0.25 * len(runs)), dpi=100,
                             squeeze=False, layout="constrained")
    splits_seen: set[str] = set()
    for ax, metric in zip(axes[0], present):
        for run_index, (name, records) in enumerate(runs.items()):
            for split, style in SPLIT_STYLES.items():
                points = [(to_x[name](r["step"]), r[metric]) for r in records
                          if r.get("split") == split and metric in r]
                if not points:
                    continue
                splits_seen.add(split)
                xs, values = zip(*points)
                color = f"C{run_index}" if len(runs) > 1 else f"C{list(SPLIT_STYLES).index(split)}"
                ax.plot(xs, values, style, color=color, marker="o" if len(points) < 30 else None, markersize=3)
        ax.set_xlabel(X_AXES[x])
        ax.set_ylabel(metric)
        ax.set_title(metric)
        ax.grid(alpha=0.3)
    splits = [s for s in SPLIT_STYLES if s in splits_seen]
    if len(runs) > 1:
        handles = [Line2D([], [], color=f"C{i}", label=name) for i, name in enumerate(runs)]
        handles += [Line2D([], [], color="black", linestyle=SPLIT_STYLES[s], label=s) for s in splits]
    else:
        handles = [Line2D([], [], color=f"C{list(SPLIT_STYLES).index(s)}", linestyle=SPLIT_STYLES[s], label=s)
                   for s in splits]
    entry_px = 45 + 6 * max(len(h.get_label()) for h in handles)  # line sample + label at 8 pt, generously
    columns = max(1, min(len(handles), 4, int(fig.get_figwidth() * fig.dpi * 0.95) // entry_px))
    fig.legend(handles=handles, loc="outside lower center", ncols=columns, fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=11)
    return fig


def plot_curves(records: list[dict] | dict[str, list[dict]], path: str | Path, title: str = "training curves",
                x: str = "step", step_samples: int | dict[str, int] = 0) -> Path:
    """Loss / accuracy curves (train and val/test) from metrics.jsonl records; a dict of runs overlays them."""
    runs = records if isinstance(records, dict) else {"run": records}
    return _save(curves_figure(runs, title, x, step_samples), path)


def metric_vs_key_figure(points: list[tuple[str, object, float]], key: str, metric: str):
    """Each run's final `metric` against its value of config `key` (numbers on a numeric axis, else categories);
    a line joins the mean per value, so repeats of one setting show their spread."""
    plt = _pyplot()
    values = [value for _, value, _ in points]
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    categories = list(dict.fromkeys(map(str, values)))
    xs = [float(v) if numeric else categories.index(str(v)) for v in values]
    ys = [result for *_, result in points]
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=100, layout="constrained")
    ax.scatter(xs, ys, color="C0", zorder=3)
    means = {x: sum(y for x2, y in zip(xs, ys) if x2 == x) / xs.count(x) for x in sorted(set(xs))}
    ax.plot(list(means), list(means.values()), color="C0", alpha=0.6)
    if numeric:
        if all(float(v).is_integer() for v in values):
            ax.set_xticks(sorted(set(xs)))
    else:
        ax.set_xticks(range(len(categories)), categories)
    ax.set_xlabel(key)
    ax.set_ylabel(f"final {metric}")
    ax.set_title(f"{metric} against {key} ({len(points)} runs)")
    ax.grid(alpha=0.3)
    return fig


def plot_metric_vs_key(points: list[tuple[str, object, float]], key: str, metric: str, path: str | Path) -> Path:
    """The final metric of several runs against one config key (e.g. accuracy vs model.depth) as a PNG."""
    return _save(metric_vs_key_figure(points, key, metric), path)
