"""High-order (piecewise polynomial) networks: memorisation of one book, layer speed, Shakespeare val loss, the
seed-004 lines.

    flock /tmp/allmlp-bench.lock .venv/bin/python benchmarks/highorder.py [--memorise-minutes 2.5]

(a) memorisation, as the language-interpolation seed: `large_single_layer` and the no-hidden-layer discontinuous
    net trained on the first 120 KB of the Shakespeare corpus (the book_highorder preset) for a fixed time;
    next-char accuracy on the training text and val loss.
(b) forward+backward time of a piecewise layer (its automatic pass and the sparse pass) relative to nn.Linear of
    the same shape and to the dense expansion (nn.Linear with n*segments times the inputs), eager and compiled.
(c) val loss on the Shakespeare split through benchmarks/shakespeare.py's own procedure (same data, evaluation and
    clock), next to the causal Mixer: at that benchmark's budget, reusing its causal Mixer result, when
    results/shakespeare.json exists; else both trained here for 2.5 minutes (keeps this script near 12 minutes).
(d) every seed-004 training line, typed with the seed's words (allmlp/models/highorder/seed_lines.py): loss on
    its first batch, val loss after --seconds of training (default 60), ln V and the unigram entropy beside them;
    just this table: --skip memorise speed shakespeare (the other entries of --out are kept as they were).
Writes benchmarks/results/highorder.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn as nn

from allmlp.config import build_config
from allmlp.engine import fit, make_fabric
from allmlp.models import count_parameters
from allmlp.models.highorder.layers import PiecewisePolynomial
from allmlp.tasks import build_experiment

HERE = Path(__file__).parent
RESULTS = HERE / "results"
NOTE = ("absolute times and steps per budget depend on the machine and its load; ratios are measured in one "
        "process, back to back")


@torch.no_grad()
def next_char_accuracy(model: nn.Module, tokens: torch.Tensor, context: int, batch_size: int = 4096) -> float:
    """Share of the stream's chars (after the first `context`) that the window model ranks first."""
    model.eval()
    windows = tokens.unfold(0, context + 1, 1)  # (N, T + 1)
    correct = 0
    for chunk in windows.split(batch_size):
        correct += int((model(chunk[:, :-1]).argmax(-1) == chunk[:, -1]).sum())
    model.train()
    return correct / len(windows)


def memorise(name: str, overrides: list[str], minutes: float, run_dir: Path) -> dict:
    """Train a book_highorder setup for `minutes` (cosine schedule); accuracy on the training text, val loss, steps,
    epochs."""
    cfg = build_config("book_highorder", [*overrides, f"train.max_minutes={minutes}", "train.max_epochs=0",
                                          "train.max_steps=100000000", "train.progress=false",
                                          "train.checkpoint_interval=0", "train.compile=true",
                                          "train.eval_interval=250", "optim.schedule=cosine"])
    # cosine over the clock: the preset's reduce-on-plateau watches val loss, which rises while a net memorises,
    # so it cuts the lr to nothing within minutes and freezes the run
    fabric = make_fabric(cfg.train)
    fabric.seed_everything(cfg.train.seed, verbose=False)
    exp = build_experiment(cfg)
    result = fit(fabric, exp, cfg, run_dir)
    tokens = exp.train_batches.tokens
    accuracy = next_char_accuracy(exp.model, tokens, exp.model.context_length)
    epochs = result["step"] / exp.train_batches.steps_per_epoch
    return {"network": name, "overrides": overrides, "params": count_parameters(exp.model),
            "train_accuracy": round(accuracy, 4), "val_loss": round(result["val/loss"], 4),
            "steps": result["step"], "epochs": round(epochs, 1), "train_seconds": round(result["train_seconds"], 1),
            "train_chars": len(tokens)}


def fwd_bwd_seconds(fn, x: torch.Tensor, reps: int) -> float:
    """Median seconds of one forward + backward of fn(x).sum()."""
    for _ in range(3):
        fn(x).sum().backward()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn(x).sum().backward()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def layer_speed(in_features: int, out_features: int, n: int, segments: int, batch: int, reps: int) -> dict:
    """Times of the piecewise layer (auto and sparse passes), nn.Linear and the dense expansion, eager and compiled."""
    torch.manual_seed(0)
    auto = PiecewisePolynomial(in_features, out_features, n=n, segments=segments)
    sparse = PiecewisePolynomial(in_features, out_features, n=n, segments=segments, impl="sparse")
    linear = nn.Linear(in_features, out_features)
    expansion = nn.Linear(in_features * auto.weights_per_link, out_features)
    x = (torch.rand(batch, in_features) * 2 - 1).requires_grad_()
    wide = torch.randn(batch, in_features * auto.weights_per_link).requires_grad_()
    out = {"shape": {"in": in_features, "out": out_features, "n": n, "segments": segments, "batch": batch,
                     "weights_per_link": auto.weights_per_link, "auto_pass": "sparse" if auto.sparse else "dense"}}
    for mode in ("eager", "compiled"):
        wrap = torch.compile if mode == "compiled" else (lambda m: m)
        t = {"piecewise": fwd_bwd_seconds(wrap(auto), x, reps), "piecewise_sparse": fwd_bwd_seconds(wrap(sparse), x, reps),
             "linear": fwd_bwd_seconds(wrap(linear), x, reps), "dense_expansion": fwd_bwd_seconds(wrap(expansion), wide, reps)}
        out[f"seconds_{mode}"] = {k: round(v, 6) for k, v in t.items()}
        out[f"layer_time_ratio_{mode}"] = round(t["piecewise"] / t["linear"], 2)
        out[f"sparse_time_ratio_{mode}"] = round(t["piecewise_sparse"] / t["linear"], 2)
        out[f"dense_expansion_ratio_{mode}"] = round(t["dense_expansion"] / t["linear"], 2)
        out[f"piecewise_vs_dense_expansion_{mode}"] = round(t["piecewise"] / t["dense_expansion"], 2)
    return out


def shakespeare(minutes: float, setups: dict) -> dict:
    """Train high-order nets through benchmarks/shakespeare.py's own procedure; the causal Mixer from its results."""
    spec = importlib.util.spec_from_file_location("bench_shakespeare", HERE / "shakespeare.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    previous = RESULTS / "shakespeare.json"
    models = {}
    if previous.is_file():
        saved = json.loads(previous.read_text())
        if "causal_mixer" in saved.get("models", {}) and abs(saved["budget_seconds"] - minutes * 60) < 1:
            models["causal_mixer"] = {**saved["models"]["causal_mixer"], "source": str(previous)}
    if "causal_mixer" not in models:
        setups = {"causal_mixer": None, **setups}
    for name, setup in setups.items():
        if setup is not None:
            bench.SETUPS[name] = setup
        print(f"== shakespeare {name}: {minutes:g} min", flush=True)
        models[name] = bench.train_one(name, minutes, Path("runs/bench") / f"shakespeare_{name}", [])
        models[name].pop("curve", None)
    return {"budget_seconds": minutes * 60, "models": models}


def seed_lines(seconds: float, threads: int) -> dict:
    """Every seed-004 training line, typed with the seed's words: loss on its first batch, val loss after
    `seconds` of training, against ln V (uniform guessing) and the unigram entropy of the training text."""
    import math
    import subprocess
    from collections import Counter

    from allmlp.models.highorder.seed_lines import SEED_LINES

    clock = [f"train.max_minutes={seconds / 60}", "train.max_epochs=0", "train.max_steps=100000000",
             "train.progress=false", "train.checkpoint_interval=0", "train.eval_interval=0", f"train.threads={threads}"]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE).stdout
    out = {"seconds_each": seconds, "threads": threads or torch.get_num_threads(), "commit": commit.strip(),
           "lines": {}}
    for line in SEED_LINES:
        cfg = build_config(line.preset, [*line.words.split(), *clock])
        fabric = make_fabric(cfg.train)
        fabric.seed_everything(cfg.train.seed, verbose=False)
        exp = build_experiment(cfg)
        with torch.no_grad():
            first_loss = float(exp.loss_fn(exp.model, exp.train_batches.batch(0))[0])
        counts = torch.bincount(exp.train_batches.tokens).double()
        unigram = float(-(counts[counts > 0] / counts.sum() * (counts[counts > 0] / counts.sum()).log()).sum())
        result = fit(fabric, exp, cfg, Path("runs/bench") / f"seed_{line.name}")
        row = {"command": f"allmlp train {line.preset} {line.words}", "params": count_parameters(exp.model),
               "ln_vocab": round(math.log(exp.tokenizer.vocab_size), 4), "unigram_entropy": round(unigram, 4),
               "first_step_loss": round(first_loss, 4), "val_loss": round(result["val/loss"], 4),
               "below_unigram": result["val/loss"] < unigram, "steps": result["step"],
               "train_seconds": round(result["train_seconds"], 1), "seed_figure": line.seed_figure}
        out["lines"][line.name] = row
        print(json.dumps({line.name: row}), flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--memorise-minutes", type=float, default=2.5, help="training time per memorisation run")
    parser.add_argument("--shakespeare-minutes", type=float, default=0,
                        help="budget of (c) (default: results/shakespeare.json's, else 2.5 for both models)")
    parser.add_argument("--reps", type=int, default=10, help="timed repetitions per layer measurement")
    parser.add_argument("--seconds", type=float, default=60, help="training time per seed-004 line")
    parser.add_argument("--threads", type=int, default=0, help="torch threads for the seed lines (0: default)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["memorise", "speed", "shakespeare", "seed_lines"],
                        help="parts to leave out; their entries in --out are kept as they were")
    parser.add_argument("--out", default=str(RESULTS / "highorder.json"))
    args = parser.parse_args()
    out_path = Path(args.out)
    out = json.loads(out_path.read_text()) if out_path.is_file() else {}
    started = time.perf_counter()
    if "speed" not in args.skip:
        out["layer_speed"] = [layer_speed(200, 200, 2, 2, 1000, args.reps),  # a hidden layer
                              layer_speed(16, 200, 2, 84, 1000, args.reps)]  # the one-segment-per-char input
        hidden = out["layer_speed"][0]
        out["layer_time_ratio_eager"] = hidden["layer_time_ratio_eager"]
        out["layer_time_ratio_compiled"] = hidden["layer_time_ratio_compiled"]
        print(json.dumps(out["layer_speed"], indent=1), flush=True)
    if "memorise" not in args.skip:
        setups = {"large_single_layer": ["net=large_single_layer", "optimizer.lr=3e-3", "batch_size=1000"],
                  "no_hidden_layer": ["net=large_single_layer", "net.hidden.layers=0", "net.layer_type=discontinuous",
                                      "optimizer.lr=1e-2", "batch_size=1000"]}
        out["memorisation"] = {"book": "first 120,000 chars of the shakespeare corpus (90% train)",
                               "minutes_each": args.memorise_minutes, "runs": {}}
        for name, overrides in setups.items():
            print(f"== memorise {name}: {args.memorise_minutes:g} min", flush=True)
            out["memorisation"]["runs"][name] = memorise(name, overrides, args.memorise_minutes,
                                                         Path("runs/bench") / f"highorder_{name}")
            print(json.dumps(out["memorisation"]["runs"][name]), flush=True)
    if "shakespeare" not in args.skip:
        minutes = args.shakespeare_minutes
        previous = RESULTS / "shakespeare.json"
        if minutes <= 0:
            minutes = json.loads(previous.read_text())["budget_seconds"] / 60 if previous.is_file() else 2.5
        ho = ({"name": "ho_large_single_layer", "context_length": 16, "hidden_width": 200},
              ["data.context_length=16", "data.batch_size=512", "optim.name=adam", "optim.lr=3e-3", "optim.weight_decay=0", "train.compile=true"])
        out["shakespeare"] = shakespeare(minutes, {"ho_large_single_layer": ho})
        print(json.dumps(out["shakespeare"], indent=1), flush=True)
    if "seed_lines" not in args.skip:
        out["seed_lines"] = seed_lines(args.seconds, args.threads)
    out["device"] = f"cpu ({platform.machine()}), torch {torch.__version__}, {torch.get_num_threads()} threads"
    out["note"] = NOTE
    out["seconds"] = round(time.perf_counter() - started, 1)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {out_path}")


if __name__ == "__main__":
    main()
