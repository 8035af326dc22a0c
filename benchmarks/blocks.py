"""Accuracy against depth: vision Mixers with 1, 2, 4 and 8 blocks, each trained on the same time budget.

    flock /tmp/allmlp-bench.lock .venv/bin/python benchmarks/blocks.py [--minutes 2] [--blocks 1 2 4 8] [--seeds 0 1 2]

Fashion-MNIST always (the fashion_mixer preset with model.depth=N, 5,000 training images held out for val);
CIFAR-10 too when its python batches are in the cache or at --cifar-path (the cifar10_mixer_N presets of the
seed-003 comparison). Every depth trains once per seed; val and test accuracy are given as mean and spread.
Writes benchmarks/results/blocks.json (accuracy, parameters, steps per depth, and a markdown parameter table)
and benchmarks/results/blocks.png (mean test accuracy against the number of blocks), plus the curves, token-mixing
weights, patch projections and confusion matrix of the 4-block model (first seed) in
benchmarks/results/blocks_fashion_4/. Run folders: runs/bench/blocks_*.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import tables
import torch
from common import (add_common_arguments, output_path, runs_folder, save_line_plot, smoke_fashion, smoke_folder,
                    spread, train, write_results)

from allmlp.configure import build_config
from allmlp.data.cache import cache_dir
from allmlp.models import count_parameters, create_model
from allmlp.viz import figures_for_run

CIFAR_FILES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch")


def cifar_folder(path: str | None) -> Path | None:
    """The folder holding the CIFAR-10 python batches (given, or in the cache), or None: never downloads."""
    candidates = [Path(path)] if path else []
    candidates += [cache_dir() / "cifar10" / "cifar-10-batches-py", cache_dir() / "cifar10"]
    for folder in candidates:
        for inner in (folder, folder / "cifar-10-batches-py"):
            if all((inner / name).is_file() for name in CIFAR_FILES):
                return inner
    return None


def parameters(preset: str, overrides: list[str], num_classes: int = 10) -> int:
    """Parameter count of a preset's model, built on the meta device (no data needed)."""
    cfg = build_config(preset, overrides)
    with torch.device("meta"):
        return count_parameters(create_model(cfg.model.name, **{"num_classes": num_classes, **cfg.model.args}))


def train_one(preset: str, overrides: list[str], minutes: float, run_dir: Path, eval_interval: int) -> dict:
    """Train one model for `minutes` (cosine schedule follows the clock); its val / test metrics, steps, parameters."""
    cfg = build_config(preset, [f"train.max_minutes={minutes}", "train.max_steps=10000000",
                                f"train.eval_interval={eval_interval}", "train.checkpoint_interval=0",
                                "train.progress=false", "train.log_interval=50", *overrides])
    started = []
    exp, result = train(cfg, run_dir, prepare=lambda exp: started.append(time.perf_counter()))
    start = started[0]
    val = {"val_accuracy": round(result["val/acc"], 4)} if "val/acc" in result else {}
    return {"params": count_parameters(exp.model), **val, "test_accuracy": round(result["test/acc"], 4),
            "test_loss": round(result["test/loss"], 4), "steps": result["step"], "precision": result["precision"],
            "train_seconds": round(result["train_seconds"], 1), "wall_seconds": round(time.perf_counter() - start, 1),
            "run_dir": str(run_dir)}


def plot(rows: dict[str, dict[int, dict]], path: Path, minutes: float) -> Path:
    """Test accuracy against the number of Mixer blocks, one line per data set, parameters annotated."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.2), dpi=100)
    for name, per_depth in rows.items():
        trained = sorted(d for d, e in per_depth.items() if "test_accuracy" in e)
        if not trained:
            continue
        accs = [100 * per_depth[d]["test_accuracy"]["mean"] for d in trained]
        ax.plot(trained, accs, "o-", label=name)
        for depth, acc in zip(trained, accs):
            ax.annotate(f"{per_depth[depth]['params'] / 1e3:.0f}k", (depth, acc), textcoords="offset points",
                        xytext=(0, 7), ha="center", fontsize=8)
    ax.set_xscale("log", base=2)
    ax.set_xticks([1, 2, 4, 8], ["1", "2", "4", "8"])
    ax.set_xlabel("Mixer blocks")
    ax.set_ylabel("test accuracy (%), mean over seeds")
    return save_line_plot(fig, ax, path, f"accuracy vs depth, {minutes:g} min of CPU training each (labels: parameters)")


def train_seeds(preset: str, overrides: list[str], args, run_dir: Path) -> dict:
    """One depth over every seed: per-seed results, val / test accuracy as mean and spread."""
    per_seed = {}
    for seed in args.seeds:
        folder = run_dir if seed == args.seeds[0] else run_dir.with_name(f"{run_dir.name}_seed{seed}")
        per_seed[str(seed)] = train_one(preset, [*overrides, f"train.seed={seed}"], args.minutes, folder,
                                        args.eval_interval)
        print(json.dumps({preset: per_seed[str(seed)], "seed": seed}), flush=True)
    first = per_seed[str(args.seeds[0])]
    summary = {key: spread([r[key] for r in per_seed.values()])
               for key in ("val_accuracy", "test_accuracy") if key in first}
    return {"params": first["params"], **summary, "runs": per_seed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=2.0, help="training budget per model (default 2)")
    parser.add_argument("--blocks", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--eval-interval", type=int, default=0, help="evaluate every N steps (0: at the end only)")
    parser.add_argument("--cifar-path", help="folder with the CIFAR-10 python batches (default: the cache)")
    add_common_arguments(parser, "blocks", seeds=True)
    args = parser.parse_args()
    runs = runs_folder(args, "blocks")
    fashion = []
    if args.smoke:
        args.minutes, args.blocks = 0.02, [1, 2]
        fashion = [f"data.path={smoke_fashion(smoke_folder('blocks'))}", "data.val_size=64", "train.max_steps=3",
                   "data.batch_size=32"]
    cifar = None if args.smoke else cifar_folder(args.cifar_path)
    rows: dict[str, dict[int, dict]] = {"fashion_mnist": {}, "cifar10": {}}
    for depth in args.blocks:
        print(f"fashion_mnist, {depth} block(s), {args.minutes} min, seeds {args.seeds}", flush=True)
        rows["fashion_mnist"][depth] = train_seeds("fashion_mixer", [f"model.depth={depth}", *fashion], args,
                                                   runs / f"blocks_fashion_{depth}")
    for depth in args.blocks:
        preset = f"cifar10_mixer_{depth}"
        if cifar is None:
            rows["cifar10"][depth] = {"params": parameters(preset, [])}  # the seed's table, without training
            continue
        print(f"cifar10, {depth} block(s), {args.minutes} min", flush=True)
        rows["cifar10"][depth] = train_seeds(preset, [f"data.path={cifar}", "train.max_epochs=0"], args,
                                             runs / f"blocks_cifar10_{depth}")
    out = output_path(args, "blocks")
    png = plot(rows, out.with_suffix(".png"), args.minutes)
    shown = 4 if 4 in args.blocks else max(args.blocks)  # figures of one trained model, for the README
    figures = figures_for_run(runs / f"blocks_fashion_{shown}", out.parent / f"blocks_fashion_{shown}")
    print("figures: " + ", ".join(str(p) for p in figures.values()))
    written = write_results(out, args, args.seeds, {
        "budget_minutes_per_model": args.minutes,
        "fashion_mnist": {str(d): e for d, e in rows["fashion_mnist"].items()},
        "cifar10": {str(d): e for d, e in rows["cifar10"].items()},
        "cifar10_trained": cifar is not None,
        "plot": png.name,
        "protocol": "the time budget is wall clock, so step counts (and with them accuracy) depend on the machine "
                    "and its load; fashion_mixer preset (hidden 128, 4x4 patches, 5,000 training images held out "
                    "for val) with model.depth=N; cifar10 rows without accuracy are parameter counts only "
                    "(no CIFAR-10 files here)"})
    print(tables.blocks_table(json.loads(written.read_text())))


if __name__ == "__main__":
    main()
