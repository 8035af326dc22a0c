"""Fashion-MNIST vision table: Mixer, ResMLP, gMLP (each tiny, ~0.3M parameters) and the plain MLP, each with the
old recipe and the new one, under one wall-clock budget each.

    python benchmarks/fashion_mnist.py [--minutes 10] [--models mixer resmlp gmlp mlp] [--recipes old new] [overrides]

Every run holds the preset's 5,000 training images out for validation (data.val_size): settings are chosen on val
accuracy; test accuracy is measured once per run, after training, on single views and with the test-time flip, both
labelled. Runs with an EMA of the weights report the averaged weights' figures (the raw weights' beside them as
raw_*). `test_accuracy` at the top is the default preset's headline (the `fashion_mixer` preset as it ships: the
mixer row of the recipe named in DEFAULT_RECIPE). Writes benchmarks/results/fashion_mnist.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import tables
from common import (add_common_arguments, output_path, runs_folder, smoke_fashion, smoke_folder, train,
                    write_results)

from allmlp.checkpoint import EMA_WEIGHTS, load_weights
from allmlp.configure import build_config
from allmlp.models import count_parameters, create_model
from allmlp.tasks.classification import classification_metrics, load_splits, predict

# model column -> overrides of the fashion_mixer preset (model.name drops the preset's own model keys)
MODELS = {"mixer": [], "resmlp": ["model.name=resmlp_tiny_28"], "gmlp": ["model.name=gmlp_tiny_28"],
          "mlp": ["model.name=mlp_classifier"]}
# recipe column -> overrides: "old" is the fashion_mixer preset's recipe (flip, label smoothing 0.1, AdamW 3e-3);
# "new" adds random erasing and an EMA of the weights; "mix" adds mixup and cutmix on half the images to "new"
# (not run by default). They are candidates to choose between on val accuracy: docs/vision-models.md says which
# figures exist.
RECIPES = {
    "old": [],
    "new": ["data.random_erasing=0.25", "train.ema_decay=0.999"],
    "mix": ["data.random_erasing=0.25", "train.ema_decay=0.999", "data.mixup_alpha=0.2", "data.cutmix_alpha=1.0",
            "data.mix_prob=0.5"],
}
DEFAULT_RECIPE = "old"  # the recipe the fashion_mixer preset ships with


def measure(model, splits, cfg) -> dict:
    """Val and test accuracy and loss, with the preset's view (test-time flip) and on single views."""
    measured = {}
    for split in [s for s in ("val", "test") if s in splits]:
        images, labels = splits[split]
        for suffix, flip in (("", cfg.data.eval_hflip), ("_single_view", False)):  # the preset's view, then plain
            logits = predict(model, images, cfg.data.eval_batch_size, flip, cfg.data.img_size)
            metrics = classification_metrics(logits, labels)
            measured[f"{split}_accuracy{suffix}"] = round(metrics["acc"], 4)
            measured.setdefault(f"{split}_loss", round(metrics["loss"], 4))
    return measured


def run(preset: str, minutes: float, overrides: list[str], run_dir: Path) -> dict:
    """Train `preset` for at most `minutes` (cosine schedule follows the clock); its val and test figures measured
    once after training (of the EMA weights when the recipe keeps them, the raw ones as raw_*)."""
    cfg = build_config(preset, [f"train.max_minutes={minutes}", "train.max_steps=1000000", "train.eval_interval=0",
                                "train.checkpoint_interval=0", "train.progress=false", *overrides])
    started = []
    exp, result = train(cfg, run_dir, prepare=lambda exp: started.append(time.perf_counter()))
    start = started[0]
    splits = load_splits(cfg)
    measured = measure(exp.model.eval(), splits, cfg)
    if cfg.train.ema_decay > 0:
        averaged = create_model(cfg.model.name, **cfg.model.args)
        load_weights(averaged, run_dir / EMA_WEIGHTS)
        measured = {**measure(averaged.eval(), splits, cfg), **{f"raw_{k}": v for k, v in measured.items()}}
    return {"model": cfg.model.name, "model_args": cfg.model.args, "params": count_parameters(exp.model),
            "val_size": cfg.data.val_size, "eval_hflip": cfg.data.eval_hflip, **measured,
            "train_seconds": round(result["train_seconds"], 1), "steps": result["step"],
            "precision": result["precision"], "wall_seconds": round(time.perf_counter() - start, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="fashion_mixer")
    parser.add_argument("--minutes", type=float, default=10.0, help="training budget of every run")
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--recipes", nargs="+", choices=list(RECIPES), default=["old", "new"])
    parser.add_argument("overrides", nargs="*", help="section.key=value for every run, after the recipe's")
    add_common_arguments(parser, "fashion_mnist")
    args = parser.parse_args()
    runs = runs_folder(args, "fashion_mnist")
    overrides = list(args.overrides)
    if args.smoke:
        args.minutes = 0.02
        overrides += [f"data.path={smoke_fashion(smoke_folder('fashion_mnist'))}", "data.val_size=64",
                      "train.max_steps=3", "data.batch_size=32"]
    rows = []
    for recipe in args.recipes:
        for column in args.models:
            row = run(args.preset, args.minutes, [*MODELS[column], *RECIPES[recipe], *overrides],
                      runs / f"{column}_{recipe}")
            rows.append({"column": column, "recipe": recipe, **row})
            print(json.dumps(rows[-1]), flush=True)
    best = max(rows, key=lambda r: r.get("val_accuracy_single_view", 0.0))
    headline = next((r for r in rows if r["column"] == "mixer" and r["recipe"] == DEFAULT_RECIPE), rows[0])
    result = {**{k: v for k, v in headline.items() if k not in ("column", "recipe")},
              "headline": f"{headline['column']} / {headline['recipe']} recipe",
              "table": rows,
              "best_on_val": {"model": best["column"], "recipe": best["recipe"],
                              "val_accuracy_single_view": best.get("val_accuracy_single_view")},
              "recipes": {name: RECIPES[name] for name in args.recipes},
              "preset": args.preset, "budget_minutes": args.minutes, "overrides": overrides,
              "protocol": "settings chosen on val accuracy (data.val_size training images held out); test measured "
                          "once per run after training; wall-clock budgets, so steps depend on the machine and its "
                          "load"}
    path = write_results(output_path(args, "fashion_mnist"), args, [0], result)
    print(tables.fashion_mnist_table(json.loads(path.read_text())))


if __name__ == "__main__":
    main()
