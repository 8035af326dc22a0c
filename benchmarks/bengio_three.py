"""The seed's three implementations of the Bengio MLP (+ hand-written backprop) trained side by side on names.

    flock /tmp/allmlp-bench.lock .venv/bin/python benchmarks/bengio_three.py [--steps 3000] [--preset names_bengio]

Trains `bengio` (nn.Module), `bengio_raw` (raw tensors), `bengio_layers` (hand-written layers) and `bengio` with
`optim.manual_backprop=true`, all from the same seed for the same steps through the normal engine, plus the raw
network with makemore part 2's plain randn init (the seed's "worse starting point"). Then a 2-D embedding model.
Writes benchmarks/results/bengio_three.{json,png} and bengio_embeddings.png (next to --out when given); run
folders in runs/bench/bengio_*. --smoke: a few steps on made-up names.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from common import add_common_arguments, output_path, runs_folder, smoke_folder, smoke_names, write_results
from common import train as train_run
from names import names_list

from allmlp.checkpoint import read_metrics
from allmlp.configure import build_config
from allmlp.data.text import fetch_corpus
from allmlp.models import count_parameters, create_model
from allmlp.models.bengio import copy_weights
from allmlp.viz import plot_char_embeddings, vocab_labels

RUNS = {  # label -> (run folder under runs/bench, overrides on top of the preset)
    "nn.Module + nn.Parameter (bengio)": ("bengio_module", ["model.name=bengio"]),
    "raw tensors (bengio_raw)": ("bengio_raw", ["model.name=bengio_raw"]),
    "hand-written layers (bengio_layers)": ("bengio_layers", ["model.name=bengio_layers"]),
    "bengio, manual backprop": ("bengio_manual_backprop", ["model.name=bengio", "optim.manual_backprop=true"]),
    "raw tensors, randn init (makemore part 2)": ("bengio_raw_randn", ["model.name=bengio_raw", "model.init=randn"]),
}


def train(preset: str, overrides: list[str], steps: int, run_dir: Path):
    """Train one configuration for `steps` steps with the engine; returns (experiment, result, metrics records)."""
    cfg = build_config(preset, [*overrides, f"train.max_steps={steps}", "train.max_minutes=0", "train.progress=false",
                                f"train.eval_interval={max(steps // 10, 1)}", "train.checkpoint_interval=0",
                                f"train.log_interval={max(steps // 100, 1)}", "optim.warmup_steps=100"])
    started = []
    exp, result = train_run(cfg, run_dir, prepare=lambda exp: started.append(time.perf_counter()))
    result["wall_seconds"] = time.perf_counter() - started[0]
    return exp, result, read_metrics(run_dir)


def same_logits_check(preset: str) -> float:
    """Largest logit difference between the three implementations holding one set of weights (train mode, BN on)."""
    cfg = build_config(preset, ["model.batch_norm=true"])
    args = {k: v for k, v in cfg.model.args.items() if k != "direct"}
    torch.manual_seed(0)
    models = [create_model(name, vocab_size=27, **args) for name in ("bengio", "bengio_raw", "bengio_layers")]
    for other in models[1:]:
        copy_weights(models[0], other)
    x = torch.randint(0, 27, (256, models[0].context_length))
    outs = [m.train()(x) for m in models]
    return max((out - outs[0]).abs().max().item() for out in outs[1:])


def plot_curves(runs: dict[str, list[dict]], path: Path) -> None:
    """Train loss (left) and val loss (right) against step for every implementation, overlaid."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), dpi=100)
    styles = ["-", "--", ":", "-.", "-"]
    for index, (label, records) in enumerate(runs.items()):
        for ax, split in zip(axes, ("train", "val")):
            points = [(r["step"], r["loss"]) for r in records if r.get("split") == split and "loss" in r]
            if points:
                steps, losses = zip(*points)
                ax.plot(steps, losses, styles[index], color=f"C{index}", lw=2.2 - 0.3 * index, label=label,
                        marker="o" if split == "val" else None, markersize=3)
    for ax, split in zip(axes, ("train", "val")):
        ax.set_xlabel("step")
        ax.set_ylabel(f"{split} loss (nats per char)")
        ax.set_title(f"{split} loss: three implementations of the same network")
        ax.set_yscale("log")  # the randn-init run starts near 40 nats, the others near 3
        ax.set_ylim(1.8, 12)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("Bengio MLP on names: same seed, same steps (curves on top of each other = same network)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="names_bengio")
    parser.add_argument("--steps", type=int, default=3000, help="optimizer steps per implementation")
    parser.add_argument("--embedding-steps", type=int, default=3000, help="steps of the 2-D embedding model")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="overrides for every run")
    add_common_arguments(parser, "bengio_three")
    args = parser.parse_args()
    if args.smoke:
        args.steps = args.embedding_steps = 3
        args.set = [*args.set, f"data.path={smoke_names(smoke_folder('bengio_three'))}", "data.val_lines=40",
                    "data.test_lines=40"]
    out_path, runs = output_path(args, "bengio_three"), runs_folder(args, "bengio_three")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out: dict = {"preset": args.preset, "steps": args.steps, "overrides": args.set, "runs": {}}
    curves = {}
    for label, (run_name, overrides) in RUNS.items():
        print(f"== {label}", flush=True)
        exp, result, records = train(args.preset, [*args.set, *overrides], args.steps, runs / run_name)
        curves[label] = records
        first = next(r["loss"] for r in records if r.get("split") == "train")
        out["runs"][label] = {"overrides": overrides, "params": count_parameters(exp.model),
                              "first_logged_train_loss": round(first, 4),
                              "val_loss": round(result["val/loss"], 4), "test_loss": round(result["test/loss"], 4),
                              "train_seconds": round(result["train_seconds"], 1), "precision": result["precision"],
                              "steps_per_second": round(result["step"] / result["train_seconds"], 1)}
        print(json.dumps(out["runs"][label]), flush=True)
    out["max_logit_difference_same_weights"] = same_logits_check(args.preset)
    plot_curves(curves, out_path.with_name("bengio_three.png"))

    print("== 2-D embedding", flush=True)
    exp, result, _ = train(args.preset, [*args.set, "model.name=bengio", "model.embedding_dim=2"], args.embedding_steps,
                           runs / "bengio_embedding_2d")
    labels = vocab_labels(exp.tokenizer, exp.tokenizer.vocab_size)
    plot_char_embeddings(exp.model.char_embeddings(), labels, out_path.with_name("bengio_embeddings.png"),
                         title=f"Bengio MLP on names: 2-D character embeddings (val loss {result['val/loss']:.3f})")
    out["embedding_2d"] = {"val_loss": round(result["val/loss"], 4), "steps": result["step"]}
    given = [item.split("=", 1)[1] for item in args.set if item.startswith("data.path=")]
    out["names"] = names_list(Path(given[-1]) if given else fetch_corpus("names"))
    out["plots"] = ["bengio_three.png", "bengio_embeddings.png"]  # next to the JSON
    write_results(out_path, args, [0], out)


if __name__ == "__main__":
    main()
