"""Fashion-MNIST: the default vision Mixer preset within a fixed time budget, next to a plain-MLP baseline.

    python benchmarks/fashion_mnist.py [--minutes 10] [--baseline-minutes 2] [overrides ...]

The preset holds 5,000 training images out for validation (data.val_size): settings are chosen on val accuracy;
test accuracy is measured once, after training, with the preset's evaluation (test-time flip) and on single
views, both labelled. Writes benchmarks/results/fashion_mnist.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from common import (add_common_arguments, output_path, runs_folder, smoke_fashion, smoke_folder, train,
                    write_results)

from allmlp.configure import build_config
from allmlp.models import count_parameters
from allmlp.tasks.classification import classification_metrics, load_splits, predict


def run(preset: str, minutes: float, overrides: list[str], run_dir: Path) -> dict:
    """Train `preset` for at most `minutes` (cosine schedule follows the clock); its val metrics, then its test
    metrics measured once (with the preset's evaluation, and on single images without the test-time flip)."""
    cfg = build_config(preset, [f"train.max_minutes={minutes}", "train.max_steps=1000000", "train.eval_interval=0",
                                "train.checkpoint_interval=0", "train.progress=false", *overrides])
    started = []
    exp, result = train(cfg, run_dir, prepare=lambda exp: started.append(time.perf_counter()))
    start = started[0]
    splits = load_splits(cfg)
    model, measured = exp.model.eval(), {}
    for split in [s for s in ("val", "test") if s in splits]:
        images, labels = splits[split]
        for suffix, flip in (("", cfg.data.eval_hflip), ("_single_view", False)):  # the preset's view, then plain
            metrics = classification_metrics(predict(model, images, cfg.data.eval_batch_size, flip), labels)
            measured[f"{split}_accuracy{suffix}"] = round(metrics["acc"], 4)
            measured.setdefault(f"{split}_loss", round(metrics["loss"], 4))
    return {"model": cfg.model.name, "model_args": cfg.model.args, "params": count_parameters(exp.model),
            "val_size": cfg.data.val_size, "eval_hflip": cfg.data.eval_hflip, **measured,
            "train_seconds": round(result["train_seconds"], 1), "steps": result["step"],
            "wall_seconds": round(time.perf_counter() - start, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="fashion_mixer")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--baseline-minutes", type=float, default=2.0, help="plain MLP budget; 0 skips it")
    parser.add_argument("overrides", nargs="*")
    add_common_arguments(parser, "fashion_mnist")
    args = parser.parse_args()
    runs = runs_folder(args, "fashion_mnist")
    overrides = list(args.overrides)
    if args.smoke:
        args.minutes = args.baseline_minutes = 0.02
        overrides += [f"data.path={smoke_fashion(smoke_folder('fashion_mnist'))}", "data.val_size=64",
                      "train.max_steps=3", "data.batch_size=32"]
    result = run(args.preset, args.minutes, overrides, runs / "fashion_mixer")
    if args.baseline_minutes > 0:
        result["baseline_mlp"] = run(args.preset, args.baseline_minutes,
                                     ["model.name=mlp_classifier", "data.augment=false", *overrides],
                                     runs / "fashion_mlp")
    result.update({"preset": args.preset, "budget_minutes": args.minutes, "overrides": overrides,
                   "protocol": "settings chosen on val accuracy (data.val_size training images held out); test "
                               "measured once after training; wall-clock budgets, so steps depend on the machine "
                               "and its load"})
    print(json.dumps(result, indent=2))
    write_results(output_path(args, "fashion_mnist"), args, [0], result)


if __name__ == "__main__":
    main()
