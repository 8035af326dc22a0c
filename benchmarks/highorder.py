"""High-order (piecewise polynomial) networks: memorisation of one book, layer speed, Shakespeare val loss, the
language-interpolation project's training lines.

    flock /tmp/allmlp-bench.lock .venv/bin/python benchmarks/highorder.py [--memorise-minutes 2.5]

(a) memorisation, as the language-interpolation project: `large_single_layer` and the no-hidden-layer discontinuous
    net trained on the first 120 KB of the Shakespeare corpus (the book_highorder preset) for a fixed time;
    next-char accuracy on the training text and val loss.
(b) forward+backward time of a piecewise layer (its automatic pass and the sparse pass) relative to nn.Linear of
    the same shape and to the dense expansion (nn.Linear with n*segments times the inputs), eager and compiled;
    the bound (n x segments Linear layers) is checked against the faster of the eager and compiled Linear.
(c) val loss on the Shakespeare split through benchmarks/shakespeare.py's own procedure (same data, evaluation and
    clock), next to the causal Mixer, both trained here for --shakespeare-minutes (default 2.5), and the
    Kneser-Ney count models of orders 3 and 5 on the same chars. Nothing is taken from another results file, so
    every number here comes from this run's commit and machine.
(d) every training line of that project, typed in its words (allmlp/models/highorder/reference_lines.py): loss on
    its first batch, val loss after --seconds of training (default 60), ln V and the unigram entropy beside them,
    and the val loss of the unigram prior the nets start from (below it: learned more than char frequencies).
Writes benchmarks/results/highorder.json whole (sections left out with --skip are absent; (d) is its "seed_lines",
the key the committed file has); --smoke: seconds.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import time
from pathlib import Path

import torch
import torch.nn as nn
from common import add_common_arguments, output_path, runs_folder, smoke_folder, smoke_text, train, write_results

from allmlp.configure import build_config
from allmlp.models import count_parameters
from allmlp.models.highorder.layers import PiecewisePolynomial

HERE = Path(__file__).parent
PROTOCOL = ("absolute times and steps per budget depend on the machine and its load; ratios are measured in one "
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
    cfg = build_config("book_highorder", [f"train.max_minutes={minutes}", "train.max_epochs=0",
                                          "train.max_steps=100000000", "train.progress=false",
                                          "train.checkpoint_interval=0", "train.compile=true",
                                          "train.eval_interval=250", "optim.schedule=cosine", *overrides])
    # cosine over the clock: the preset's reduce-on-plateau watches val loss, which rises while a net memorises,
    # so it cuts the lr to nothing within minutes and freezes the run
    exp, result = train(cfg, run_dir)
    tokens = exp.train_batches.tokens
    accuracy = next_char_accuracy(exp.model, tokens, exp.model.context_length)
    epochs = result["step"] / exp.train_batches.steps_per_epoch
    return {"network": name, "overrides": overrides, "params": count_parameters(exp.model),
            "train_accuracy": round(accuracy, 4), "val_loss": round(result["val/loss"], 4),
            "steps": result["step"], "epochs": round(epochs, 1), "train_seconds": round(result["train_seconds"], 1),
            "train_chars": len(tokens)}


def fwd_bwd_seconds(fn, x: torch.Tensor, reps: int) -> float:
    """Seconds of one forward + backward of fn(x).sum(): the fastest of `reps` (the run least disturbed by other
    work on the machine; a median still carries it)."""
    for _ in range(3):
        fn(x).sum().backward()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn(x).sum().backward()
        times.append(time.perf_counter() - start)
    return min(times)


def layer_speed(in_features: int, out_features: int, n: int, segments: int, batch: int, reps: int,
                modes: tuple[str, ...] = ("eager", "compiled")) -> dict:
    """Times of the piecewise layer (auto and sparse passes), nn.Linear and the dense expansion, eager and compiled;
    the bound n x segments is checked against the fastest Linear of the modes measured."""
    torch.manual_seed(0)
    auto = PiecewisePolynomial(in_features, out_features, n=n, segments=segments)
    sparse = PiecewisePolynomial(in_features, out_features, n=n, segments=segments, impl="sparse")
    linear = nn.Linear(in_features, out_features)
    expansion = nn.Linear(in_features * auto.weights_per_link, out_features)
    x = (torch.rand(batch, in_features) * 2 - 1).requires_grad_()
    wide = torch.randn(batch, in_features * auto.weights_per_link).requires_grad_()
    out = {"shape": {"in": in_features, "out": out_features, "n": n, "segments": segments, "batch": batch,
                     "weights_per_link": auto.weights_per_link, "auto_pass": "sparse" if auto.sparse else "dense"}}
    for mode in modes:
        wrap = torch.compile if mode == "compiled" else (lambda m: m)
        t = {"piecewise": fwd_bwd_seconds(wrap(auto), x, reps), "piecewise_sparse": fwd_bwd_seconds(wrap(sparse), x, reps),
             "linear": fwd_bwd_seconds(wrap(linear), x, reps), "dense_expansion": fwd_bwd_seconds(wrap(expansion), wide, reps)}
        out[f"seconds_{mode}"] = {k: round(v, 6) for k, v in t.items()}
        out[f"layer_time_ratio_{mode}"] = round(t["piecewise"] / t["linear"], 2)
        out[f"sparse_time_ratio_{mode}"] = round(t["piecewise_sparse"] / t["linear"], 2)
        out[f"dense_expansion_ratio_{mode}"] = round(t["dense_expansion"] / t["linear"], 2)
        out[f"piecewise_vs_dense_expansion_{mode}"] = round(t["piecewise"] / t["dense_expansion"], 2)
    fastest = {k: min(out[f"seconds_{mode}"][k] for mode in modes) for k in ("piecewise", "linear")}
    out["fastest_linear"] = min(modes, key=lambda mode: out[f"seconds_{mode}"]["linear"])
    out["layer_time_ratio_vs_fastest_linear"] = round(fastest["piecewise"] / fastest["linear"], 2)
    out["bound_n_times_segments"] = n * segments
    out["bound"] = "met" if out["layer_time_ratio_vs_fastest_linear"] <= n * segments else "missed"
    return out


def shakespeare(minutes: float, setups: dict, runs: Path, extra: list[str]) -> dict:
    """Train high-order nets and the causal Mixer through benchmarks/shakespeare.py's own procedure; the
    Kneser-Ney models of orders 3 and 5 on the same chars."""
    spec = importlib.util.spec_from_file_location("bench_shakespeare", HERE / "shakespeare.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    models = {}
    for name, setup in {"causal_mixer": None, **setups}.items():
        if setup is not None:
            bench.SETUPS[name] = setup
        print(f"== shakespeare {name}: {minutes:g} min", flush=True)
        models[name] = bench.train_one(bench.SETUPS[name], minutes, runs / f"shakespeare_{name}", extra,
                                       eval_seconds=minutes * 60)  # the final val loss is what is compared
        models[name].pop("curve", None)
    for order in (3, 5):
        models[f"ngram{order}"] = bench.fit_count_model(order, runs / f"shakespeare_ngram{order}", extra)
        models[f"ngram{order}"].pop("curve", None)
    return {"budget_seconds": minutes * 60, "models": models}


class UnigramPrior(nn.Module):
    """The model that learned nothing but the char frequencies: the same log prior (V,) for every window."""

    def __init__(self, log_prior: torch.Tensor):
        super().__init__()
        self.log_prior = nn.Parameter(log_prior)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """(B, T) ids -> (B, V) logits."""
        return self.log_prior.expand(len(idx), -1)


def prior_val_loss(cfg, exp) -> float:
    """Val loss (the task's own scoring) of the training text's add-one unigram prior, where the nets start."""
    from allmlp.data.text import TextBatches, load_text_splits
    from allmlp.tasks import language

    tokenizer, streams = load_text_splits(cfg.data, exp.tokenizer)
    prior = UnigramPrior(language.unigram_log_prior(streams["train"], tokenizer.vocab_size))
    val = TextBatches(streams["val"], exp.model.context_length, cfg.data.batch_size, 0,
                      language.sample_kind(cfg, exp.model), tokenizer.boundary_id)
    return language.stream_loss(prior, val, cfg.data.eval_targets, cfg.data.eval_batch_size)


def reference_lines(seconds: float, threads: int, extra: list[str], runs: Path) -> dict:
    """Every training line of the language-interpolation project, in its words (plus `extra`): loss on its first
    batch, val loss after `seconds` of training, against ln V (uniform guessing), the unigram entropy of the
    training text and the val loss of that unigram prior itself (what a net that learned nothing beyond the
    frequencies gets)."""
    import math

    from allmlp.models.highorder.reference_lines import REFERENCE_LINES

    clock = [f"train.max_minutes={seconds / 60}", "train.max_epochs=0", "train.max_steps=100000000",
             "train.progress=false", "train.checkpoint_interval=0", "train.eval_interval=0", f"train.threads={threads}"]
    out = {"seconds_each": seconds, "threads": threads or torch.get_num_threads(), "lines": {}}
    for line in REFERENCE_LINES:
        cfg = build_config(line.preset, [*line.words.split(), *clock, *extra])
        before = {}

        def first_step(exp):
            with torch.no_grad():
                before["loss"] = float(exp.loss_fn(exp.model, exp.train_batches.batch(0))[0])
            counts = torch.bincount(exp.train_batches.tokens).double()
            before["unigram"] = float(-(counts[counts > 0] / counts.sum() * (counts[counts > 0] / counts.sum()).log())
                                      .sum())
            before["prior"] = prior_val_loss(cfg, exp)

        exp, result = train(cfg, runs / f"seed_{line.name}", prepare=first_step)
        first_loss, unigram, prior = before["loss"], before["unigram"], before["prior"]
        ln_vocab = math.log(exp.tokenizer.vocab_size)
        row = {"command": f"allmlp train {line.preset} {line.words}", "params": count_parameters(exp.model),
               "ln_vocab": round(ln_vocab, 4), "unigram_entropy": round(unigram, 4),
               "prior_val_loss": round(prior, 4), "first_step_loss": round(first_loss, 4),
               "first_within_2x_ln_vocab": first_loss <= 2 * ln_vocab, "val_loss": round(result["val/loss"], 4),
               "below_unigram": result["val/loss"] < unigram, "below_prior": result["val/loss"] < prior,
               "steps": result["step"], "train_seconds": round(result["train_seconds"], 1),
               "seed_figure": line.reported}  # (the results file's key)
        out["lines"][line.name] = row
        print(json.dumps({line.name: row}), flush=True)
    rows = out["lines"].values()
    out["summary"] = {"lines": len(rows),
                      "both_bounds": sum(r["first_within_2x_ln_vocab"] and r["below_unigram"] for r in rows),
                      "below_prior": sum(r["below_prior"] for r in rows)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--memorise-minutes", type=float, default=2.5, help="training time per memorisation run")
    parser.add_argument("--shakespeare-minutes", type=float, default=2.5,
                        help="training time of each model in (c) (default 2.5)")
    parser.add_argument("--reps", type=int, default=20, help="timed repetitions per layer measurement (the fastest counts)")
    parser.add_argument("--seconds", type=float, default=60, help="training time per reference line")
    parser.add_argument("--threads", type=int, default=0, help="torch threads for the reference lines (0: default)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["memorise", "speed", "shakespeare", "seed_lines"])
    add_common_arguments(parser, "highorder")
    args = parser.parse_args()
    out_path, runs = output_path(args, "highorder"), runs_folder(args, "highorder")
    # --smoke: tiny text, no torch.compile (its first compile alone takes ~15 s), a few steps
    smoke_data = ["data.name=text", f"data.path={smoke_text(smoke_folder('highorder'), 4000)}"] if args.smoke else []
    smoke_train = ["train.compile=false", "train.max_steps=3", "data.batch_size=64",
                   "data.eval_batch_size=256"] if args.smoke else []
    if args.smoke:
        args.memorise_minutes = args.shakespeare_minutes = 0.02
    out = {}
    started = time.perf_counter()
    if "speed" not in args.skip:
        modes, reps, batch = (("eager",), 1, 64) if args.smoke else (("eager", "compiled"), args.reps, 1000)
        out["layer_speed"] = [layer_speed(200, 200, 2, 2, batch, reps, modes),  # a hidden layer
                              layer_speed(16, 200, 2, 84, batch, reps, modes)]  # the one-segment-per-char input
        hidden = out["layer_speed"][0]
        for mode in modes:
            out[f"layer_time_ratio_{mode}"] = hidden[f"layer_time_ratio_{mode}"]
        out["layer_time_ratio_vs_fastest_linear"] = hidden["layer_time_ratio_vs_fastest_linear"]
        out["bound"] = f"{hidden['bound']} ({hidden['layer_time_ratio_vs_fastest_linear']}x the fastest Linear, " \
                       f"bound {hidden['bound_n_times_segments']})"
        print(json.dumps(out["layer_speed"], indent=1), flush=True)
    if "memorise" not in args.skip:
        setups = {"large_single_layer": ["net=large_single_layer", "optimizer.lr=3e-3", "batch_size=1000"],
                  "no_hidden_layer": ["net=large_single_layer", "net.hidden.layers=0", "net.layer_type=discontinuous",
                                      "optimizer.lr=1e-2", "batch_size=1000"]}
        out["memorisation"] = {"book": "first 120,000 chars of the shakespeare corpus (90% train)",
                               "minutes_each": args.memorise_minutes, "runs": {}}
        for name, overrides in setups.items():
            print(f"== memorise {name}: {args.memorise_minutes:g} min", flush=True)
            out["memorisation"]["runs"][name] = memorise(name, [*overrides, *smoke_data, *smoke_train],
                                                         args.memorise_minutes, runs / f"highorder_{name}")
            print(json.dumps(out["memorisation"]["runs"][name]), flush=True)
    if "shakespeare" not in args.skip:
        minutes = args.shakespeare_minutes
        ho = ({"name": "ho_large_single_layer", "context_length": 16, "hidden_width": 200},
              ["data.context_length=16", "data.batch_size=512", "optim.name=adam", "optim.lr=3e-3", "optim.weight_decay=0", "train.compile=true"])
        out["shakespeare"] = shakespeare(minutes, {"ho_large_single_layer": ho}, runs, [*smoke_data, *smoke_train])
        print(json.dumps(out["shakespeare"], indent=1), flush=True)
    if "seed_lines" not in args.skip:
        out["seed_lines"] = reference_lines(0.3 if args.smoke else args.seconds, args.threads, smoke_data, runs)
    out["protocol"] = PROTOCOL
    out["seconds"] = round(time.perf_counter() - started, 1)
    write_results(out_path, args, [0], out)


if __name__ == "__main__":
    main()
