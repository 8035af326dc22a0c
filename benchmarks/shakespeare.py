"""Character LMs on Shakespeare at equal wall-clock time: causal_mixer, gmlp, chat_mixer, bengio and a small GPT.

    flock /tmp/allmlp-bench.lock .venv/bin/python benchmarks/shakespeare.py [--minutes 5] [--models ...]

Every model trains on the same split (the shakespeare_mixer preset's data: 90% train, 5% val, 5% test, contiguous)
for --minutes, the cosine schedule following the clock, evaluated about six times on the same 4,096 val chars
(the curve); the reported val and test losses are over 65,536 chars of each split, measured after training.
The GPT is nanoGPT's CPU "baby" shape (4 layers, 4 heads, 128 embedding, block 64, batch 12, lr 1e-3), written
here so that the reference runs through the same engine. Writes benchmarks/results/shakespeare.json
{"budget_seconds", "models": {NAME: {"val_loss", "params", "tokens_per_second", "curve"}}, "device", "note"}
and benchmarks/results/shakespeare.png (val loss against training time).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from allmlp.config import build_config, load_preset
from allmlp.engine import fit, make_fabric
from allmlp.models import count_parameters, register_model
from allmlp.tasks import build_experiment

RESULTS = Path(__file__).parent / "results"
FINAL_EVAL_TARGETS = 65536


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


def train_one(name: str, minutes: float, run_dir: Path, extra: list[str]) -> dict:
    """Train one setup for `minutes`; final val loss, parameters, tokens/s and the (seconds, val loss) curve."""
    model, overrides = SETUPS[name]
    overrides = [*overrides, *extra, f"train.max_minutes={minutes}", "train.max_steps=100000000",
                 "train.progress=false", "train.checkpoint_interval=0", "data.eval_targets=4096"]
    cfg = build_config({**load_preset("shakespeare_mixer"), "model": model}, overrides)
    fabric = make_fabric(cfg.train)
    fabric.seed_everything(cfg.train.seed, verbose=False)
    exp = build_experiment(cfg)
    cfg.train.eval_interval = max(20, int(minutes * 60 / 6 / seconds_per_step(exp)))
    curve, evaluate = [], exp.evaluate

    def evaluate_and_record(model):
        metrics = evaluate(model)
        curve.append([round(time.perf_counter() - start, 1), round(metrics["val/loss"], 4)])
        return metrics

    exp.evaluate = evaluate_and_record
    start = time.perf_counter()
    result = fit(fabric, exp, cfg, run_dir)
    cfg.data.eval_targets = FINAL_EVAL_TARGETS  # the reported loss: more chars than the curve's, outside the budget
    with torch.no_grad():
        final = evaluate(exp.model.eval())
    tokens = exp.samples_per_batch * result["step"]
    return {"val_loss": round(final["val/loss"], 4), "test_loss": round(final["test/loss"], 4),
            "params": count_parameters(exp.model), "tokens_per_second": round(tokens / result["train_seconds"]),
            "steps": result["step"], "train_seconds": round(result["train_seconds"], 1),
            "val_bpc": round(final["val/loss"] / math.log(2), 4), "curve": curve, "model": model,
            "overrides": overrides}


def plot(models: dict, path: Path, minutes: float) -> Path:
    """Val loss against training seconds, one line per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=100)
    for name, entry in models.items():
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=5.0, help="training budget per model (default 5)")
    parser.add_argument("--models", nargs="+", default=list(SETUPS), choices=list(SETUPS))
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="overrides for every model")
    parser.add_argument("--out", default=str(RESULTS / "shakespeare.json"))
    args = parser.parse_args()
    models = {}
    for name in args.models:
        print(f"== {name}: {args.minutes:g} min", flush=True)
        models[name] = train_one(name, args.minutes, Path("runs/bench") / f"shakespeare_{name}", args.set)
        print(json.dumps({k: v for k, v in models[name].items() if k != "curve"}), flush=True)
    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    png = plot(models, out_path.with_suffix(".png"), args.minutes)
    out = {"budget_seconds": args.minutes * 60, "models": models,
           "device": f"cpu ({platform.machine()}), torch {torch.__version__}, {torch.get_num_threads()} threads",
           "note": "equal wall-clock budgets: steps depend on the machine and its load (tokens_per_second shows "
                   "what each model got)",
           "plot": png.name}  # next to the JSON
    out_path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {out_path}")


if __name__ == "__main__":
    main()
