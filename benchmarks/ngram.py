"""Kneser-Ney count baselines on names and Shakespeare: what a neural model must beat to be called better.

    .venv/bin/python benchmarks/ngram.py [--orders 3 5 7]

Fits the `ngram` model (interpolated Kneser-Ney, tasks/ngram.py) by counting each training split, on exactly the
splits of the neural benchmarks: names_ngram (1,000 names for val, 1,000 for test, every held-out char) and
shakespeare_ngram (90/5/5 contiguous). Shakespeare losses are given both over every char of the split and over
the 65,536 evenly spread chars benchmarks/shakespeare.py evaluates its models on. Deterministic (no seed), so one
run per order; the order is chosen on val. Writes benchmarks/results/ngram.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from common import (add_common_arguments, output_path, runs_folder, smoke_folder, smoke_names, smoke_text, train,
                    write_results)
from names import makemore_names, names_list

from allmlp.configure import build_config
from allmlp.tasks.ngram import evaluate_run

SHAKESPEARE_BENCH_TARGETS = 65536  # benchmarks/shakespeare.py's FINAL_EVAL_TARGETS


def fit_order(preset: str, order: int, overrides: list[str], run_dir: Path) -> dict:
    """Count, save the run folder, and evaluate one order: val / test over every char and the fit's seconds."""
    cfg = build_config(preset, [f"model.order={order}", "train.progress=false", "data.eval_targets=0", *overrides])
    exp, result = train(cfg, run_dir)  # counting happens when the experiment is built
    fit_seconds = result["build_seconds"]
    metrics = evaluate_run(exp.model, cfg, run_dir)
    entry = {"order": order, "val_loss": round(metrics["val/loss"], 4), "test_loss": round(metrics["test/loss"], 4),
             "fit_seconds": round(fit_seconds, 1), "table_entries": cfg.model.args["num_grams"],
             "discounts": [round(d, 4) for d in exp.model.discounts.tolist()], "run_dir": str(run_dir)}
    if preset == "shakespeare_ngram":
        cfg.data.eval_targets = SHAKESPEARE_BENCH_TARGETS  # read by the task's evaluation when it runs
        thinned = exp.final_evaluate(exp.model)
        entry.update({"val_loss_bench_chars": round(thinned["val/loss"], 4),
                      "test_loss_bench_chars": round(thinned["test/loss"], 4)})
    return entry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, nargs="+", default=[3, 5, 7])
    parser.add_argument("--corpora", nargs="+", default=["names", "shakespeare"], choices=["names", "shakespeare"])
    parser.add_argument("--names-path", default="", help="makemore's names.txt, when you have it (default: fetch)")
    add_common_arguments(parser, "ngram")
    args = parser.parse_args()
    runs = runs_folder(args, "ngram")
    data: dict[str, list[str]] = {"names": [], "shakespeare": []}
    names_path = Path(args.names_path) if args.names_path else None
    if "names" in args.corpora and names_path is None and not args.smoke:
        names_path = makemore_names()
    if args.smoke:
        args.orders = [2, 3]
        names_path = smoke_names(smoke_folder("ngram"))
        data["names"] = ["data.val_lines=40", "data.test_lines=40"]
        data["shakespeare"] = ["data.name=text", f"data.path={smoke_text(smoke_folder('ngram'))}"]
    if names_path is not None:
        data["names"].append(f"data.path={names_path}")
    results: dict = {"orders": args.orders}
    for corpus in args.corpora:
        preset = f"{corpus}_ngram"
        results[corpus] = {}
        for order in args.orders:
            print(f"== {corpus}: order {order}", flush=True)
            results[corpus][str(order)] = fit_order(preset, order, data[corpus], runs / f"{corpus}_ngram{order}")
            print(json.dumps(results[corpus][str(order)]), flush=True)
        best = min(results[corpus].values(), key=lambda entry: entry["val_loss"])
        results[corpus]["chosen_on_val"] = {"order": best["order"], "val_loss": best["val_loss"],
                                            "test_loss": best["test_loss"]}
    if "names" in args.corpora:
        results["names_list"] = names_list(names_path)
    write_results(output_path(args, "ngram"), args, [], results)


if __name__ == "__main__":
    main()
