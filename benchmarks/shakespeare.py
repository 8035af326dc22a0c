"""Character LMs on Shakespeare at equal wall-clock time: causal_mixer, gmlp, chat_mixer, bengio, a small GPT, and
the Kneser-Ney count baselines.

    flock /tmp/allmlp-bench.lock .venv/bin/python benchmarks/shakespeare.py [--minutes 5] [--seeds 0 1 2] [--models ...]

Every model trains on the same split (the shakespeare_mixer preset's data: 90% train, 5% val, 5% test, contiguous)
for --minutes per seed, the cosine schedule following the clock, evaluated about six times on the same 4,096 val
chars (the curve); the reported val and test losses are over 65,536 chars of each split, measured after training.
The GPT is nanoGPT's CPU "baby" shape (4 layers, 4 heads, 128 embedding, block 64, batch 12, lr 1e-3), written
here so that the reference runs through the same engine. `ngram3` / `ngram5` / `ngram7` are interpolated
Kneser-Ney models (shakespeare_ngram preset) fitted by counting the training split: deterministic, one run each,
evaluated on the same chars. Writes benchmarks/results/shakespeare.json {"models": {NAME: {"val_loss": {mean, std,
...}, "test_loss", "runs": {SEED: {...}}}}, ...} and benchmarks/results/shakespeare.png (val loss against time).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from common import (add_common_arguments, output_path, runs_folder, smoke_folder, smoke_text, spread,
                    write_results)

from allmlp.config import build_config, load_preset
from allmlp.engine import fit, make_fabric
from allmlp.models import count_parameters, register_model
from allmlp.tasks import build_experiment

FINAL_EVAL_TARGETS = 65536
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


# Model -> (its model section, overrides of the shakespeare_mixer preset's data / optimizer settings).
SETUPS = {
    "causal_mixer": ({"name": "causal_mixer", "embedding_dim": 128, "depth": 4, "channels_mlp_dim": 512,
                      "num_heads": 4}, []),
    "gmlp": ({"name": "gmlp", "embedding_dim": 128, "depth": 4, "ffn_dim": 512, "num_heads": 4}, []),
    "gpt": ({"name": "bench_gpt", "dim": 128, "depth": 4, "heads": 4},
            ["data.batch_size=12", "optim.lr=1e-3", "optim.weight_decay=0.1"]),
    "chat_mixer": ({"name": "chat_mixer", "embedding_dim": 64, "depth": 4, "tokens_mlp_dim": 64,
                    "channels_mlp_dim": 256}, ["data.context_length=32", "data.batch_size=128"]),
    "bengio": ({"name": "bengio", "embedding_dim": 24, "hidden_dim": 512},
               ["data.context_length=8", "data.batch_size=128"]),
}


def seconds_per_step(exp, steps: int = 5) -> float:
    """Rough time of one training step, to place about ten evaluations inside the budget."""
    batch = exp.train_batches.batch(0)
    start = time.perf_counter()
    for _ in range(steps):
        loss, _ = exp.loss_fn(exp.model, batch)
        loss.backward()
    exp.model.zero_grad(set_to_none=True)
    return (time.perf_counter() - start) / steps


def fit_count_model(order: int, run_dir: Path, extra: list[str]) -> dict:
    """Fit a Kneser-Ney model of `order` on the training split; val / test loss on the neural models' chars."""
    cfg = build_config("shakespeare_ngram", [f"model.order={order}", "train.progress=false",
                                             f"data.eval_targets={FINAL_EVAL_TARGETS}", *extra])
    fabric = make_fabric(cfg.train)
    start = time.perf_counter()
    exp = build_experiment(cfg)
    fit_seconds = time.perf_counter() - start
    result = fit(fabric, exp, cfg, run_dir)
    return {"val_loss": round(result["val/loss"], 4), "test_loss": round(result["test/loss"], 4),
            "params": 0, "table_entries": cfg.model.args["num_grams"], "fit_seconds": round(fit_seconds, 1),
            "val_bpc": round(result["val/loss"] / math.log(2), 4), "curve": [[round(fit_seconds, 1),
                                                                              round(result["val/loss"], 4)]],
            "model": {"name": "ngram", "order": order}, "overrides": extra}


def train_one(name: str, minutes: float, run_dir: Path, extra: list[str]) -> dict:
    """Train one setup for `minutes`; final val loss, parameters, tokens/s and the (seconds, val loss) curve."""
    model, overrides = SETUPS[name]
    overrides = [*overrides, f"train.max_minutes={minutes}", "train.max_steps=100000000",
                 "train.progress=false", "train.checkpoint_interval=0", "data.eval_targets=4096", *extra]
    cfg = build_config({**load_preset("shakespeare_mixer"), "model": model}, overrides)
    fabric = make_fabric(cfg.train)
    fabric.seed_everything(cfg.train.seed, verbose=False)
    exp = build_experiment(cfg)
    cfg.train.eval_interval = max(20, int(minutes * 60 / 6 / seconds_per_step(exp)))
    curve, evaluate, final_evaluate = [], exp.evaluate, exp.final_evaluate

    def recorded(metrics):
        curve.append([round(time.perf_counter() - start, 1), round(metrics["val/loss"], 4)])
        return metrics

    exp.evaluate = lambda model: recorded(evaluate(model))  # during training: val
    exp.final_evaluate = lambda model: recorded(final_evaluate(model))  # the end of the run: val and test
    start = time.perf_counter()
    result = fit(fabric, exp, cfg, run_dir)
    cfg.data.eval_targets = FINAL_EVAL_TARGETS  # the reported loss: more chars than the curve's, outside the budget
    with torch.no_grad():
        final = final_evaluate(exp.model.eval())
    tokens = exp.samples_per_batch * result["step"]
    return {"val_loss": round(final["val/loss"], 4), "test_loss": round(final["test/loss"], 4),
            "params": count_parameters(exp.model), "tokens_per_second": round(tokens / result["train_seconds"]),
            "steps": result["step"], "train_seconds": round(result["train_seconds"], 1),
            "val_bpc": round(final["val/loss"] / math.log(2), 4), "curve": curve, "model": model,
            "overrides": overrides}


def plot(models: dict, path: Path, minutes: float) -> Path:
    """Val loss against training seconds, one line per model (first seed); count models as dashed levels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=100)
    for name, entry in models.items():
        if entry["deterministic"]:  # a count model: fitted in seconds, one level
            ax.axhline(entry["val_loss"]["mean"], linestyle="--", lw=1, color="gray", label=f"{name} (counts)")
            continue
        seconds, losses = zip(*entry["curve"])
        ax.plot(seconds, losses, "o-", markersize=3, label=f"{name} ({entry['params'] / 1e3:.0f}k)")
    ax.set_xlabel("training seconds")
    ax.set_ylabel("val loss (nats per char)")
    ax.set_ylim(top=min(3.5, ax.get_ylim()[1]))
    ax.set_title(f"Shakespeare, {minutes:g} min of CPU training each", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def run_model(name: str, args, data: list[str], runs: Path) -> dict:
    """One model over the seeds (a count model once: it is deterministic), with mean and spread."""
    smoke = ["train.max_steps=3", "data.eval_batch_size=256"] if args.smoke else []
    per_seed = {}
    if name in COUNT_MODELS:
        per_seed[str(args.seeds[0])] = fit_count_model(COUNT_MODELS[name], runs / f"shakespeare_{name}",
                                                       [*data, *args.set, *smoke])
    for seed in [] if name in COUNT_MODELS else args.seeds:
        suffix = "" if len(args.seeds) == 1 else f"_seed{seed}"
        per_seed[str(seed)] = train_one(name, args.minutes, runs / f"shakespeare_{name}{suffix}",
                                        [*data, *args.set, f"train.seed={seed}", *smoke])
    for seed, entry in per_seed.items():
        print(json.dumps({name: {k: v for k, v in entry.items() if k != "curve"}, "seed": seed}), flush=True)
    first = next(iter(per_seed.values()))
    return {"val_loss": spread([r["val_loss"] for r in per_seed.values()]),
            "test_loss": spread([r["test_loss"] for r in per_seed.values()]),
            "params": first["params"], "deterministic": name in COUNT_MODELS, "curve": first["curve"],
            "runs": {seed: {k: v for k, v in r.items() if k != "curve"} for seed, r in per_seed.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=5.0, help="training budget per model and seed (default 5)")
    parser.add_argument("--models", nargs="+", default=[*COUNT_MODELS, *SETUPS], choices=[*COUNT_MODELS, *SETUPS])
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="overrides for every model")
    add_common_arguments(parser, "shakespeare", seeds=True)
    args = parser.parse_args()
    data = []
    if args.smoke:
        args.minutes, args.models = 0.02, ["ngram3", "bengio"]
        data = ["data.name=text", f"data.path={smoke_text(smoke_folder('shakespeare'))}"]
    runs = runs_folder(args, "shakespeare")
    models = {}
    for name in args.models:
        print(f"== {name}: {args.minutes:g} min, seeds {args.seeds}", flush=True)
        models[name] = run_model(name, args, data, runs)
    out_path = output_path(args, "shakespeare")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    png = plot(models, out_path.with_suffix(".png"), args.minutes)
    write_results(out_path, args, args.seeds, {
        "budget_seconds": args.minutes * 60, "models": models, "plot": png.name,  # next to the JSON
        "protocol": f"val / test loss over {FINAL_EVAL_TARGETS:,} chars of each split (evenly spread), measured "
                    "after training; equal wall-clock budgets, so steps depend on the machine and its load "
                    "(tokens_per_second shows what each model got); count models are fitted, not trained"})


if __name__ == "__main__":
    main()
