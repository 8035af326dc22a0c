"""Fashion-MNIST: the default vision Mixer preset within a fixed time budget, next to a plain-MLP baseline.

    python benchmarks/fashion_mnist.py [--minutes 10] [--baseline-minutes 2] [overrides ...]

Writes benchmarks/results/fashion_mnist.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

from allmlp.config import build_config
from allmlp.engine import fit, make_fabric
from allmlp.models import count_parameters
from allmlp.tasks import build_experiment
from allmlp.tasks.classification import classification_metrics, load_splits, predict

RESULTS = Path(__file__).parent / "results"


def run(preset: str, minutes: float, overrides: list[str], run_dir: Path) -> dict:
    """Train `preset` for at most `minutes` (cosine schedule follows the clock) and return its test metrics
    (with the preset's evaluation, and on single images without the test-time flip)."""
    cfg = build_config(preset, [*overrides, f"train.max_minutes={minutes}", "train.max_steps=1000000",
                                "train.eval_interval=0",
                                "train.checkpoint_interval=0", "train.progress=false"])
    fabric = make_fabric(cfg.train)
    fabric.seed_everything(cfg.train.seed, verbose=False)
    exp = build_experiment(cfg)
    start = time.perf_counter()
    result = fit(fabric, exp, cfg, run_dir)
    images, labels = load_splits(cfg)["test"]
    single_view = classification_metrics(predict(exp.model.eval(), images, cfg.data.eval_batch_size), labels)
    return {"model": cfg.model.name, "model_args": cfg.model.args, "params": count_parameters(exp.model),
            "test_accuracy": round(result["test/acc"], 4), "test_loss": round(result["test/loss"], 4),
            "eval_hflip": cfg.data.eval_hflip, "test_accuracy_single_view": round(single_view["acc"], 4),
            "train_seconds": round(result["train_seconds"], 1), "steps": result["step"],
            "wall_seconds": round(time.perf_counter() - start, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="fashion_mixer")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--baseline-minutes", type=float, default=2.0, help="plain MLP budget; 0 skips it")
    parser.add_argument("--out", default=str(RESULTS / "fashion_mnist.json"))
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    runs = Path("runs/bench")
    result = run(args.preset, args.minutes, args.overrides, runs / "fashion_mixer")
    if args.baseline_minutes > 0:
        result["baseline_mlp"] = run(args.preset, args.baseline_minutes,
                                     ["model.name=mlp_classifier", "data.augment=false"], runs / "fashion_mlp")
    result.update({"preset": args.preset, "budget_minutes": args.minutes,
                   "command": "python " + " ".join(sys.argv),
                   "device": f"cpu: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
                   "note": "wall-clock budgets: steps depend on the machine and its load"})
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
