"""Character LMs on Shakespeare at equal wall-clock time: a tuned and nanoGPT's baby GPT, causal_mixer and gmlp
(full and Toeplitz token mixing), chat_mixer, bengio, and the Kneser-Ney count baselines.

    flock /tmp/allmlp-bench.lock .venv/bin/python benchmarks/shakespeare.py [--minutes 3 10] [--seeds 0 1 2]
        [--only NAME ...] [--skip NAME ...] [--gpt-setting BATCH LR WIDTH] [--extend] [--merge FILE ...]

Every model trains on the same split (the shakespeare_mixer preset's data: 90% train, 5% val, 5% test, contiguous)
for each budget of --minutes per seed, the cosine schedule following the clock, evaluated every --eval-seconds of
training on the same 16,384 val chars (the curve: training seconds, evaluation time excluded, and val loss); the
reported val and test losses are over 65,536 chars of each split, measured after training.

The GPT reference is tuned first (`gpt_tuned`): a two-stage grid over batch size x learning rate (width 128), then
width at the best pair, each trial trained for the first budget on the first seed and ranked by its val loss; the
winner trains like every model. `gpt_baby` is nanoGPT's untuned CPU "baby" setting (4 layers, 4 heads, width 128,
block 64, batch 12, lr 1e-3). For every model, `seconds_to_tuned_gpt_3min` is the training time at which its val
curve first reaches the tuned GPT's final 3-minute curve value (null if never). `ngram3` / `ngram5` / `ngram7` are
interpolated Kneser-Ney models (shakespeare_ngram preset) fitted by counting the training split: deterministic,
one fit each, evaluated on the same chars. Models the installed allmlp cannot build (e.g. Toeplitz mixing before
it exists) are skipped with the reason recorded. Writes benchmarks/results/shakespeare.json {"gpt_search", "models":
{NAME: {"3": {"val_loss": {mean, std, ...}, "test_loss", "curve", "runs"}, "10": {...},
"seconds_to_tuned_gpt_3min"}}, ...} and one curve figure per budget (benchmarks/results/shakespeare_3min.png, ...).

The whole table is hours of machine time, so it can be made in parts: `--extend` adds the budgets and models of
this run to the existing file and trains only the (model, budget) entries it lacks, and the seeds of --seeds an
entry lacks, reusing the file's tuned-GPT setting. Each entry and each run records the part that made it
(`"part"`: an index into `"parts"`, which keeps every part's command, commit, date, machine, seeds and note); the
evaluation settings must match the file's. When the GPT grid has grown since the file's search, `--extend` with
gpt_tuned trains only the new trials; if the best setting changes, the file's gpt_tuned entries are trained again
with it (`"previous_best"` records the old one). Two parts can run at once, on copies of one file:
`--extend --merge OTHER.json` then adds to this file the parts of OTHER.json it lacks with the entries they made
(training nothing), and fails on an entry both files changed.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from itertools import product
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from common import (REQUIRED_KEYS, add_common_arguments, output_path, provenance, runs_folder, save_line_plot,
                    smoke_folder, smoke_text, spread, train, write_results)

from allmlp.config import load_preset
from allmlp.configure import build_config
from allmlp.models import count_parameters, model_kwargs, register_model

FINAL_EVAL_TARGETS = 65536
CURVE_EVAL_TARGETS = 16384
COUNT_MODELS = {"ngram3": 3, "ngram5": 5, "ngram7": 7}  # name -> Kneser-Ney order (preset shakespeare_ngram)


class CausalSelfAttention(nn.Module):
    """nanoGPT's attention: one qkv projection, scaled dot-product attention with a causal mask."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)  # (B, H, T, C/H)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


class GptBlock(nn.Module):
    """Pre-norm transformer block: attention and a 4x MLP, each with a residual."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.ln1, self.attn = nn.LayerNorm(dim), CausalSelfAttention(dim, heads)
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class BabyGpt(nn.Module):
    """A small GPT for the reference (nanoGPT model.py, without dropout and weight tying)."""

    lm_kind = "causal"

    def __init__(self, vocab_size: int, context_length: int, dim: int, depth: int, heads: int):
        super().__init__()
        self.context_length = context_length
        self.token_embedding = nn.Embedding(vocab_size, dim)
        self.position_embedding = nn.Embedding(context_length, dim)
        self.blocks = nn.Sequential(*[GptBlock(dim, heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab_size)
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        T = idx.shape[1]
        x = self.token_embedding(idx) + self.position_embedding(torch.arange(T, device=idx.device))  # (B, T, C)
        return self.head(self.norm(self.blocks(x)))  # (B, T, V)


@register_model("bench_gpt", task="text")
def bench_gpt(vocab_size: int = 84, context_length: int = 64, dim: int = 128, depth: int = 4,
              heads: int = 4) -> BabyGpt:
    """nanoGPT's CPU "baby" GPT (benchmark reference only)."""
    return BabyGpt(vocab_size, context_length, dim, depth, heads)


def seconds_per_step(exp, steps: int = 5) -> float:
    """Rough time of one training step, to space the evaluations by training seconds."""
    batch = exp.train_batches.batch(0)
    start = time.perf_counter()
    for _ in range(steps):
        loss, _ = exp.loss_fn(exp.model, batch)
        loss.backward()
    exp.model.zero_grad(set_to_none=True)
    return (time.perf_counter() - start) / steps


# The models' sections; every run uses the shakespeare_mixer preset's data and optimizer unless overridden here.
CAUSAL_MIXER = {"name": "causal_mixer", "embedding_dim": 128, "depth": 4, "channels_mlp_dim": 512, "num_heads": 4}
GMLP = {"name": "gmlp", "embedding_dim": 128, "depth": 4, "ffn_dim": 512, "num_heads": 4}


GPT_SETTING = ("batch_size", "lr", "width")  # what the GPT search chooses


def gpt_setup(batch_size: int, lr: float, width: int) -> tuple[dict, list[str]]:
    """The reference GPT (4 layers, 4 heads, block 64) at one batch size, learning rate and width."""
    return ({"name": "bench_gpt", "dim": width, "depth": 4, "heads": 4},
            [f"data.batch_size={batch_size}", f"optim.lr={lr:g}", "optim.weight_decay=0.1"])


# Model -> (its model section, overrides of the shakespeare_mixer preset's data / optimizer settings).
SETUPS = {
    "gpt_baby": gpt_setup(12, 1e-3, 128),  # nanoGPT's CPU "baby" config, untuned
    "causal_mixer": (CAUSAL_MIXER, []),
    "causal_mixer_toeplitz": ({**CAUSAL_MIXER, "token_mixing": "toeplitz"}, []),
    "gmlp": (GMLP, []),
    "gmlp_toeplitz": ({**GMLP, "token_mixing": "toeplitz"}, []),
    "bengio": ({"name": "bengio", "embedding_dim": 24, "hidden_dim": 512},
               ["data.context_length=8", "data.batch_size=128"]),
    "chat_mixer": ({"name": "chat_mixer", "embedding_dim": 64, "depth": 4, "tokens_mlp_dim": 64,
                    "channels_mlp_dim": 256}, ["data.context_length=32", "data.batch_size=128"]),
}
MODELS = ["gpt_tuned", *SETUPS, *COUNT_MODELS]
# The GPT search: stage 1 every (batch size, lr) at the first width, stage 2 the other widths at the best pair.
GPT_GRID = {"batch_size": [12, 32, 64], "lr": [1e-3, 2e-3, 4e-3, 8e-3], "width": [128, 96, 192]}
SMOKE_GPT_GRID = {"batch_size": [4, 8], "lr": [1e-3], "width": [32, 64]}


def unavailable(model: dict) -> str:
    """Why this allmlp cannot build a model section (arguments its factory lacks), or ""."""
    accepted = model_kwargs(model["name"])
    missing = [key for key in model if key != "name" and key not in accepted]
    return f"model {model['name']} has no argument {', '.join(missing)} in this allmlp" if missing else ""


def seconds_to(curve: list, threshold: float | None) -> float | None:
    """Training seconds of the first curve point at or below `threshold` (None if none is)."""
    if threshold is None:
        return None
    return next((seconds for seconds, loss in curve if loss <= threshold), None)


def fitted_count_entry(entries: dict, budgets: list[float]) -> dict | None:
    """A count model's entry (fitted once, the same at every budget), or None before its fit."""
    return next((entries[f"{m:g}"] for m in budgets if f"{m:g}" in entries), None)


def fit_count_model(order: int, run_dir: Path, extra: list[str]) -> dict:
    """Fit a Kneser-Ney model of `order` on the training split; val / test loss on the neural models' chars."""
    cfg = build_config("shakespeare_ngram", [f"model.order={order}", "train.progress=false",
                                             f"data.eval_targets={FINAL_EVAL_TARGETS}", *extra])
    exp, result = train(cfg, run_dir)  # counting happens when the experiment is built
    fit_seconds = result["build_seconds"]
    cfg.data.eval_targets = CURVE_EVAL_TARGETS  # the curves' chars, for seconds_to_tuned_gpt_3min
    curve_loss = exp.evaluate(exp.model)["val/loss"]
    return {"val_loss": round(result["val/loss"], 4), "test_loss": round(result["test/loss"], 4),
            "params": 0, "table_entries": cfg.model.args["num_grams"], "fit_seconds": round(fit_seconds, 1),
            "val_bpc": round(result["val/loss"] / math.log(2), 4),
            "curve": [[round(fit_seconds, 1), round(curve_loss, 4)]],
            "model": {"name": "ngram", "order": order}, "overrides": extra}


def train_one(setup: tuple[dict, list[str]], minutes: float, run_dir: Path, extra: list[str],
              eval_seconds: float) -> dict:
    """Train one setup for `minutes`; final val / test loss, parameters, tokens/s and the val curve (training
    seconds without the evaluations' time, val loss on CURVE_EVAL_TARGETS chars), evaluated every `eval_seconds`."""
    model, overrides = setup
    overrides = [*overrides, f"train.max_minutes={minutes}", "train.max_steps=100000000",
                 "train.progress=false", "train.checkpoint_interval=0", f"data.eval_targets={CURVE_EVAL_TARGETS}",
                 *extra]
    cfg = build_config({**load_preset("shakespeare_mixer"), "model": model}, overrides)
    curve = []
    # The first step's start, seconds spent in evaluations so far, steps so far and at the last evaluation.
    clock = {"start": None, "evaluating": 0.0, "steps": 0, "evaluated_at": -1, "metrics": {}}

    def record_evaluations(exp):
        cfg.train.eval_interval = max(1, round(eval_seconds / seconds_per_step(exp)))
        evaluate, final_evaluate, loss_fn = exp.evaluate, exp.final_evaluate, exp.loss_fn
        clock["final_evaluate"] = final_evaluate  # the reported loss below is measured with it

        def timed_loss(model, batch):
            if clock["start"] is None:
                clock["start"] = time.perf_counter()
            clock["steps"] += 1
            return loss_fn(model, batch)

        def evaluate_and_record(model, final: bool = False):
            if clock["steps"] == clock["evaluated_at"]:  # the engine's final evaluation right after a periodic one
                return final_evaluate(model) if final else clock["metrics"]
            begin = time.perf_counter()
            metrics = (final_evaluate if final else evaluate)(model)  # during training val; at the end val and test
            curve.append([round(begin - clock["start"] - clock["evaluating"], 1), round(metrics["val/loss"], 4)])
            clock["evaluating"] += time.perf_counter() - begin
            clock.update(evaluated_at=clock["steps"], metrics=metrics)
            return metrics

        exp.loss_fn, exp.evaluate = timed_loss, evaluate_and_record
        exp.final_evaluate = lambda model: evaluate_and_record(model, final=True)

    exp, result = train(cfg, run_dir, prepare=record_evaluations)  # its last evaluation ends the curve
    final_evaluate = clock["final_evaluate"]
    cfg.data.eval_targets = FINAL_EVAL_TARGETS  # the reported loss: more chars than the curve's, outside the budget
    with torch.no_grad():
        final = final_evaluate(exp.model.eval())
    tokens = exp.samples_per_batch * result["step"]
    return {"val_loss": round(final["val/loss"], 4), "test_loss": round(final["test/loss"], 4),
            "params": count_parameters(exp.model), "tokens_per_second": round(tokens / result["train_seconds"]),
            "steps": result["step"], "train_seconds": round(result["train_seconds"], 1),
            "precision": result["precision"], "eval_seconds": round(clock["evaluating"], 1),
            "eval_interval_steps": cfg.train.eval_interval,
            "val_bpc": round(final["val/loss"] / math.log(2), 4), "curve": curve, "model": model,
            "overrides": overrides}


def search_gpt(args, data: list[str], runs: Path, minutes: float, earlier: dict, part: int) -> dict:
    """The two-stage grid of the GPT reference, each trial on the first seed for `minutes`, ranked by val loss;
    the trials of an `earlier` search at the same budget and seed are kept, not trained again."""
    grid = SMOKE_GPT_GRID if args.smoke else GPT_GRID
    seed, trials = args.seeds[0], []
    same_protocol = earlier.get("minutes") == minutes and earlier.get("seed") == seed
    done = {(t["batch_size"], t["lr"], t["width"]): t for t in earlier.get("trials", []) if same_protocol}

    def trial(batch_size: int, lr: float, width: int, stage: int) -> dict:
        if (batch_size, lr, width) in done:
            trials.append({"part": 0, **done[batch_size, lr, width], "stage": stage})
            return trials[-1]
        name = f"gpt_b{batch_size}_lr{lr:g}_w{width}"
        print(f"== search {name}: {minutes:g} min, seed {seed}", flush=True)
        entry = train_one(gpt_setup(batch_size, lr, width), minutes, runs / f"shakespeare_search_{name}",
                          [*data, *args.set, f"train.seed={seed}", *smoke_steps(args)], args.eval_seconds)
        record = {"batch_size": batch_size, "lr": lr, "width": width, "stage": stage, "part": part,
                  **{k: entry[k] for k in ("val_loss", "params", "steps", "tokens_per_second")}}
        print(json.dumps(record), flush=True)
        trials.append(record)
        return record

    for batch_size, lr in product(grid["batch_size"], grid["lr"]):
        trial(batch_size, lr, grid["width"][0], stage=1)
    best = min(trials, key=lambda r: r["val_loss"])
    for width in grid["width"][1:]:
        trial(best["batch_size"], best["lr"], width, stage=2)
    best = min(trials, key=lambda r: r["val_loss"])
    return {"grid": grid, "minutes": minutes, "seed": seed, "trials": trials,
            "best": {k: best[k] for k in (*GPT_SETTING, "val_loss")},
            "method": "stage 1: every batch_size x lr at the first width; stage 2: the other widths at the best "
                      "(batch_size, lr); each trial trained for the search budget on the first seed and ranked by "
                      f"val loss over {FINAL_EVAL_TARGETS:,} val chars (the test split is never looked at); the "
                      "winner is trained again like every model"}


def smoke_steps(args) -> list[str]:
    """--smoke: three steps per training."""
    return ["train.max_steps=3", "data.eval_batch_size=256"] if args.smoke else []


def run_budget(name: str, setup, args, data: list[str], runs: Path, minutes: float, seeds: list[int],
               part: int) -> dict:
    """One model for one budget over `seeds`, each run marked with the `part` that made it."""
    per_seed = {}
    for seed in seeds:
        suffix = ("" if seeds == [0] else f"_seed{seed}") + f"_{minutes:g}min"
        per_seed[str(seed)] = {**train_one(setup, minutes, runs / f"shakespeare_{name}{suffix}",
                                           [*data, *args.set, f"train.seed={seed}", *smoke_steps(args)],
                                           args.eval_seconds), "part": part}
        print(json.dumps({name: {k: v for k, v in per_seed[str(seed)].items() if k != "curve"}, "seed": seed,
                          "minutes": minutes}), flush=True)
    return per_seed


def summarise(per_seed: dict, deterministic: bool) -> dict:
    """Mean and spread over seeds of the final losses; the first seed's curve for the figure."""
    first = next(iter(per_seed.values()))
    return {"val_loss": spread([r["val_loss"] for r in per_seed.values()]),
            "test_loss": spread([r["test_loss"] for r in per_seed.values()]),
            "curve_final_val_loss": spread([r["curve"][-1][1] for r in per_seed.values()]),
            "params": first["params"], "deterministic": deterministic, "curve": first["curve"],
            "runs": per_seed}


def add_seconds_to(models: dict, threshold: float | None, budgets: list[float]) -> None:
    """Per budget and model: seconds to the tuned GPT's 3-minute val loss per seed; per model: the fastest budget."""
    for entry in models.values():
        if "skipped" in entry:
            continue
        best = None
        for minutes in budgets:
            at_budget = entry.get(f"{minutes:g}")
            if at_budget is None:  # not trained yet (a results file written mid-run)
                continue
            values = [seconds_to(run["curve"], threshold) for run in at_budget["runs"].values()]
            reached = None not in values and values
            at_budget["seconds_to_tuned_gpt_3min"] = spread(values) if reached else {"values": values, "mean": None}
            if reached and (best is None or spread(values)["mean"] < best["mean"]):
                best = {**spread(values), "budget_minutes": minutes}
        entry["seconds_to_tuned_gpt_3min"] = best


def plot(models: dict, path: Path, minutes: float, threshold: float | None) -> Path:
    """Val loss against training seconds at one budget, one line per model (first seed); count models dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=100)
    key = f"{minutes:g}"
    for name, entry in models.items():
        if key not in entry:
            continue
        at_budget = entry[key]
        if at_budget["deterministic"]:  # a count model: fitted in seconds, one level
            level = at_budget["curve"][0][1]
            ax.axhline(level, linestyle="--", lw=1, color="gray", label=f"{name} (counts)")
            ax.annotate(name, (0.99, level), xycoords=("axes fraction", "data"), ha="right", va="bottom",
                        fontsize=7, color="gray")
            continue
        seconds, losses = zip(*at_budget["curve"])
        ax.plot(seconds, losses, "o-", markersize=2, label=f"{name} ({at_budget['params'] / 1e3:.0f}k)")
    if threshold is not None:
        ax.axhline(threshold, linestyle=":", lw=1, color="black", label="tuned GPT at 3 min")
    ax.set_xlabel("training seconds")
    ax.set_ylabel(f"val loss (nats per char, {CURVE_EVAL_TARGETS:,} chars)")
    ax.set_ylim(top=min(3.5, ax.get_ylim()[1]))
    return save_line_plot(fig, ax, path, f"Shakespeare, {minutes:g} min of CPU training each", legend_fontsize=7)


def extend(results: dict, path: Path) -> list[dict]:
    """--extend: fill `results` with what the file at `path` holds (models, GPT search, budgets: the union) and
    return its parts; a file made before parts existed is one part, its own provenance."""
    if not path.is_file():
        raise SystemExit(f"shakespeare.py: --extend: no results file {path} to extend")
    previous = json.loads(path.read_text())
    for key in ("eval_every_training_seconds", "overrides"):
        if previous.get(key, []) != results[key]:
            raise SystemExit(f"shakespeare.py: --extend: {key} is {results[key]} here but {previous.get(key, [])} "
                             f"in {path}: the parts would not be comparable")
    parts = previous.get("parts") or [{**{key: previous.get(key) for key in REQUIRED_KEYS},
                                       "budgets_minutes": previous["budgets_minutes"],
                                       "models": list(previous["models"])}]
    results["budgets_minutes"] = sorted({*previous["budgets_minutes"], *results["budgets_minutes"]})
    results["models"] = {name: {key: ({"part": 0, **entry} if isinstance(entry, dict) else entry)
                                for key, entry in budgets.items()} for name, budgets in previous["models"].items()}
    results["gpt_search"], results["tuned_gpt_3min_val_loss"] = previous["gpt_search"], previous[
        "tuned_gpt_3min_val_loss"]
    return parts


def made_in(entry) -> list[int]:
    """The parts that made a (model, budget) entry and its runs (0 where a file predates part marks)."""
    if not isinstance(entry, dict) or "runs" not in entry:
        return []
    return [entry.get("part", 0), *(run.get("part", 0) for run in entry["runs"].values())]


def merge(results: dict, parts: list[dict], path: Path) -> None:
    """--merge: add to `results` (and `parts`) the parts of the file at `path` that it lacks, with the entries (and
    runs) they made; the two files must start with the same parts (both extend one file), and an entry both
    changed is an error."""
    if not path.is_file():
        raise SystemExit(f"shakespeare.py: --merge: no results file {path}")
    other = json.loads(path.read_text())
    theirs = other.get("parts") or []
    common = next((i for i, (a, b) in enumerate(zip(parts, theirs)) if a != b), min(len(parts), len(theirs)))
    if common == 0 or any(other.get(key, []) != results[key] for key in ("eval_every_training_seconds", "overrides")):
        raise SystemExit(f"shakespeare.py: --merge: {path} does not extend the same file with the same evaluation")
    new_index = {common + i: len(parts) + i for i in range(len(theirs) - common)}

    def renumbered(record: dict) -> dict:
        return {**record, "part": new_index.get(record.get("part", 0), record.get("part", 0))}

    for name, budgets in other["models"].items():
        ours = results["models"].setdefault(name, {})
        for key, entry in budgets.items():
            if not any(index >= common for index in made_in(entry)):  # from the parts both files share
                ours.setdefault(key, entry)
                continue
            if any(index >= common for index in made_in(ours.get(key))):
                raise SystemExit(f"shakespeare.py: --merge: both files trained {name} at {key} min")
            if name == "gpt_tuned" and other["gpt_search"] != results["gpt_search"]:
                raise SystemExit(f"shakespeare.py: --merge: {path} trained gpt_tuned with another GPT search")
            ours[key] = {**renumbered(entry), "runs": {seed: renumbered(run) for seed, run in entry["runs"].items()}}
    parts.extend(theirs[common:])
    if results["tuned_gpt_3min_val_loss"] is None and other["gpt_search"] == results["gpt_search"]:
        results["tuned_gpt_3min_val_loss"] = other["tuned_gpt_3min_val_loss"]
    results["budgets_minutes"] = sorted({*results["budgets_minutes"], *other["budgets_minutes"]})


def tuned_gpt_setting(args, results: dict, data: list[str], runs: Path, reference: float, part: int) -> tuple:
    """The tuned GPT's (batch, lr, width): given, or the search's best (trials the file lacks are trained); a new
    best drops the file's gpt_tuned entries, trained with the old one."""
    earlier = results["gpt_search"] or {}
    if "given" in earlier or (args.gpt_setting and not earlier):
        given = earlier.get("given") or dict(zip(GPT_SETTING, (
            int(args.gpt_setting[0]), float(args.gpt_setting[1]), int(args.gpt_setting[2]))))
        results["gpt_search"] = {"given": given}
        return tuple(given[key] for key in GPT_SETTING)
    search = search_gpt(args, data, runs, reference, earlier, part)
    setting = [search["best"][key] for key in GPT_SETTING]
    previous = earlier.get("best")
    if previous and [previous[key] for key in GPT_SETTING] != setting:
        print(f"== gpt_tuned: the search's best is now {setting} (was {previous}): trained again", flush=True)
        results["models"].pop("gpt_tuned", None)
        results["tuned_gpt_3min_val_loss"] = None
        search["previous_best"] = previous
    elif "previous_best" in earlier:
        search["previous_best"] = earlier["previous_best"]
    results["gpt_search"] = search
    return tuple(setting)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, nargs="+", default=[3.0, 10.0],
                        help="training budgets per model and seed (default 3 10)")
    parser.add_argument("--only", nargs="+", choices=MODELS, help="run only these models")
    parser.add_argument("--skip", nargs="+", default=[], choices=MODELS, help="leave these models out")
    parser.add_argument("--eval-seconds", type=float, default=10.0,
                        help="training seconds between two evaluations of the val curve (default 10)")
    parser.add_argument("--gpt-setting", nargs=3, metavar=("BATCH", "LR", "WIDTH"),
                        help="use this tuned-GPT setting instead of searching (recorded as given)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="overrides for every model")
    parser.add_argument("--extend", action="store_true",
                        help="add to the existing results file: train only the (model, budget) entries it lacks")
    parser.add_argument("--merge", nargs="+", type=Path, default=[], metavar="FILE",
                        help="with --extend: add the parts and entries of these results files and train nothing")
    add_common_arguments(parser, "shakespeare", seeds=True)
    args = parser.parse_args()
    data, names = [], [m for m in (args.only or MODELS) if m not in args.skip]
    if args.smoke:
        args.minutes, args.eval_seconds = [0.5, 1.0], 0.001  # three steps each: the budgets are never reached
        names = [m for m in ("gpt_tuned", "gpt_baby", "causal_mixer_toeplitz", "bengio", "ngram3")
                 if m in names]
        data = ["data.name=text", f"data.path={smoke_text(smoke_folder('shakespeare'))}"]
    runs, out_path = runs_folder(args, "shakespeare"), output_path(args, "shakespeare")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    results: dict = {"budgets_minutes": args.minutes, "eval_every_training_seconds": args.eval_seconds,
                     "overrides": args.set, "models": {}, "gpt_search": None, "tuned_gpt_3min_val_loss": None}
    if args.merge and not args.extend:
        parser.error("--merge needs --extend (it adds to the existing results file)")
    parts = extend(results, out_path) if args.extend else []
    for other in args.merge:
        merge(results, parts, other)
    names = [] if args.merge else names
    budgets = results["budgets_minutes"]
    reference = min(budgets, key=lambda m: abs(m - 3))  # the budget whose tuned-GPT loss is the target
    setups = dict(SETUPS)
    if "gpt_tuned" in names:
        setups["gpt_tuned"] = gpt_setup(*tuned_gpt_setting(args, results, data, runs, reference, len(parts)))

    def save(complete: bool) -> None:
        for name in COUNT_MODELS:  # fitted once: the same entry at every budget, also at budgets added later
            entries = results["models"].get(name, {})
            fitted = fitted_count_entry(entries, budgets)
            if fitted is not None:
                entries.update({f"{m:g}": entries.get(f"{m:g}", fitted) for m in budgets})
        threshold = results["tuned_gpt_3min_val_loss"]
        add_seconds_to(results["models"], threshold, budgets)
        plots = {f"{m:g}": plot(results["models"], out_path.with_name(f"{out_path.stem}_{m:g}min.png"), m,
                                threshold).name for m in budgets}  # next to the JSON
        this_part = {**provenance(args, args.seeds), "budgets_minutes": [] if args.merge else args.minutes,
                     "models": names, **({"merged": [str(other) for other in args.merge]} if args.merge else {})}
        write_results(out_path, args, args.seeds, {**results, "parts": [*parts, this_part], "plots": plots,
                                                   "complete": complete, "protocol": (
            f"val / test loss over {FINAL_EVAL_TARGETS:,} chars of each split (evenly spread), measured after "
            f"training; curves: val loss over {CURVE_EVAL_TARGETS:,} chars against training seconds (evaluation "
            "time excluded); equal wall-clock budgets, so steps depend on the machine and its load "
            "(tokens_per_second shows what each model got); count models are fitted, not trained; "
            f"tuned_gpt_3min_val_loss: gpt_tuned's last curve value at {reference:g} min, mean over seeds")})

    for name in names:
        done = results["models"].get(name, {})
        if name in COUNT_MODELS:
            if fitted_count_entry(done, budgets) is None:
                print(f"== {name}: fitting counts", flush=True)
                fitted = fit_count_model(COUNT_MODELS[name], runs / f"shakespeare_{name}",
                                         [*data, *args.set, *smoke_steps(args)])
                print(json.dumps({name: {k: v for k, v in fitted.items() if k != "curve"}}), flush=True)
                results["models"][name] = {f"{budgets[0]:g}": {
                    **summarise({str(args.seeds[0]): fitted}, deterministic=True), "part": len(parts)}}
            save(complete=False)  # which puts the entry at every budget
            continue
        reason = unavailable(setups[name][0])
        if reason:
            print(f"== {name}: skipped ({reason})", flush=True)
            results["models"][name] = done if set(done) - {"skipped"} else {"skipped": reason}
            continue
        results["models"][name] = {key: value for key, value in done.items() if key != "skipped"}
        retrained = name == "gpt_tuned" and results["tuned_gpt_3min_val_loss"] is None
        for minutes in sorted({*args.minutes, reference}) if retrained else args.minutes:
            entry = results["models"][name].get(f"{minutes:g}", {"runs": {}, "part": len(parts)})
            seeds = [seed for seed in args.seeds if str(seed) not in entry["runs"]]  # --extend may add seeds
            if not seeds:
                print(f"== {name}: {minutes:g} min already in {out_path.name}", flush=True)
                continue
            print(f"== {name}: {minutes:g} min, seeds {seeds}", flush=True)
            runs_made = run_budget(name, setups[name], args, data, runs, minutes, seeds, len(parts))
            results["models"][name][f"{minutes:g}"] = {
                **summarise({**entry["runs"], **runs_made}, deterministic=False), "part": entry["part"]}
            if name == "gpt_tuned" and minutes == reference:
                results["tuned_gpt_3min_val_loss"] = results["models"][name][f"{minutes:g}"][
                    "curve_final_val_loss"]["mean"]
            save(complete=False)
    save(complete=True)


if __name__ == "__main__":
    main()
