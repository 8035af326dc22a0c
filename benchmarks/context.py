"""Longer contexts at equal time: training tokens per second and val loss for T = 64, 256 and 1,024 characters.

    flock /tmp/allmlp-bench.lock .venv/bin/python benchmarks/context.py [--minutes 3] [--contexts 64 256 1024]

For each context length, four models train on Shakespeare for --minutes each through benchmarks/shakespeare.py's
`train_one` (same split, schedule following the clock, val loss over 65,536 chars after training): the causal
Mixer with full lower-triangular matrices (`full`), with Toeplitz mixing computed as a matrix product
(`toeplitz_direct`) and through the FFT (`toeplitz_fft`), and the GPT reference. Every model keeps the chars per
step it has at T = 64 (data.batch_size scaled by 64 / T, at least 1), so longer contexts show what they cost per
token and what the extra context buys in loss. Writes benchmarks/results/context.json {"contexts": {T: {MODEL:
{"tokens_per_second", "val_loss", ...}}}}.
"""

from __future__ import annotations

import argparse
import json

from common import add_common_arguments, output_path, runs_folder, smoke_folder, smoke_text, write_results
from shakespeare import SETUPS, gpt_setup, train_one

MIXER_VARIANTS = {"full": [], "toeplitz_direct": ["model.token_mixing=toeplitz", "model.toeplitz_method=direct"],
                  "toeplitz_fft": ["model.token_mixing=toeplitz", "model.toeplitz_method=fft"]}
REFERENCE_CONTEXT = 64


EVAL_SECONDS = 30.0  # a val point on the curve every this many training seconds


def gpt_name() -> str:
    """The strongest GPT of benchmarks/shakespeare.py's setups: the tuned one when --gpt-setting gives it."""
    return next(name for name in ("gpt_tuned", "gpt_baby", "gpt") if name in SETUPS)


def batch_size(setup: str, context_length: int) -> int:
    """The setup's batch size at T = 64 (its own override, else the preset's 32), scaled to keep chars per step."""
    given = [int(item.split("=", 1)[1]) for item in SETUPS[setup][1] if item.startswith("data.batch_size=")]
    return max(1, (given[-1] if given else 32) * REFERENCE_CONTEXT // context_length)


def run_context(context_length: int, args, data: list[str]) -> dict:
    """The three causal Mixer variants and the GPT at one context length."""
    runs, out = runs_folder(args, "context"), {}
    smoke = ["train.max_steps=3", "data.eval_batch_size=64"] if args.smoke else []
    models = {f"causal_mixer_{variant}": ("causal_mixer", overrides) for variant, overrides in MIXER_VARIANTS.items()}
    models["gpt"] = (gpt_name(), [])
    for name, (setup, overrides) in models.items():
        extra = [*overrides, f"data.context_length={context_length}",
                 f"data.batch_size={batch_size(setup, context_length)}", *data, *args.set, *smoke]
        result = train_one(SETUPS[setup], args.minutes, runs / f"context{context_length}_{name}", extra,
                           EVAL_SECONDS)
        out[name] = {key: result[key] for key in ("tokens_per_second", "val_loss", "test_loss", "val_bpc", "params",
                                                  "steps", "train_seconds", "curve", "overrides")}
        out[name]["setup"] = setup
        print(json.dumps({"context": context_length, name: {k: out[name][k] for k in
                                                            ("tokens_per_second", "val_loss", "steps")}}), flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=3.0, help="training budget per model and context")
    parser.add_argument("--contexts", type=int, nargs="+", default=[64, 256, 1024], help="context lengths")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="overrides for every model")
    parser.add_argument("--gpt-setting", nargs=3, metavar=("BATCH", "LR", "WIDTH"),
                        help="the tuned GPT (shakespeare.json's gpt_search best); default: nanoGPT's untuned baby GPT")
    add_common_arguments(parser, "context")
    args = parser.parse_args()
    if args.gpt_setting:
        SETUPS["gpt_tuned"] = gpt_setup(int(args.gpt_setting[0]), float(args.gpt_setting[1]), int(args.gpt_setting[2]))
    data = []
    if args.smoke:
        args.minutes, args.contexts = 0.02, [16, 64]
        data = ["data.name=text", f"data.path={smoke_text(smoke_folder('context'))}"]
    contexts = {str(T): run_context(T, args, data) for T in args.contexts}
    write_results(output_path(args, "context"), args, [0], {
        "budget_seconds": args.minutes * 60, "contexts": contexts, "gpt": gpt_name(),
        "gpt_setting": args.gpt_setting and dict(zip(("batch_size", "lr", "width"), args.gpt_setting)),
        "protocol": "Shakespeare, shakespeare_mixer preset's split; each model keeps its T=64 chars per step "
                    "(batch scaled by 64/T); equal wall-clock budgets; val loss over 65,536 chars after training"})


if __name__ == "__main__":
    main()
