"""Generation speed: characters per second of full recompute, incremental steps and a GPT, at contexts 64-1,024.

    python benchmarks/generate.py [--contexts 64 256 1024] [--chars 2000] [--max-seconds 8]

Untrained models of benchmarks/shakespeare.py's sizes (speed does not depend on the weights) continue a prompt of T
chars (a full window, so every timed char is past the context) by --chars characters sampled at temperature 1, in
one process, side by side:
- `incremental`: `allmlp.generate.stream_text`, which steps the model's cache (`init_state` / `step`);
- `full`: the same call with `full_recompute=True`, which runs the model on its window for every char (the exact
  equivalent of the incremental path: T chars with full matrices, the receptive field depth * (T - 1) + 1 with
  Toeplitz mixing);
- `window` (Toeplitz models) and the GPT: nanoGPT's `generate` loop, the model on the last T chars for every char.
The first char, which includes reading the prompt, is not timed. The paths take turns, 50 chars each, so that a
change of machine load hits them alike; a path stops after --max-seconds of its own time (its chars/s is then over
the chars it made). The top-level numbers per context are the Toeplitz causal Mixer's: `incremental_chars_per_s`
against `full_chars_per_s` = its `window` recompute (what every char cost before the cache, and cheaper than its
exact full path), and the GPT's `gpt_chars_per_s`; `*_cpu` ratios divide the process's CPU time
instead of the wall clock (steadier on a shared machine, the same on an idle one with one torch thread). `cost_ms_by_position` gives the mean cost per char over bins of
positions after the prompt: flat means constant time per char as the text grows.
Writes benchmarks/results/generate.json.
"""

from __future__ import annotations

import argparse
import json
import string
import time
from typing import Iterator

import torch
import torch.nn.functional as F
from common import add_common_arguments, output_path, write_results
from shakespeare import SETUPS

from allmlp.data.text import CharTokenizer
from allmlp.generate import stream_text
from allmlp.models import count_parameters, create_model

VARIANTS = {"causal_mixer": ("causal_mixer", "full"), "causal_mixer_toeplitz": ("causal_mixer", "toeplitz"),
            "gmlp": ("gmlp", "full"), "gmlp_toeplitz": ("gmlp", "toeplitz")}  # name -> (SETUPS key, token mixing)
POSITION_BINS = 8
PROMPT_TEXT = "To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer\n"


def gpt_setup() -> str:
    """The nanoGPT "baby" GPT of benchmarks/shakespeare.py (named gpt_baby once a tuned GPT sits beside it)."""
    return next(name for name in ("gpt_baby", "gpt") if name in SETUPS)


def build(setup: str, vocab_size: int, context_length: int, token_mixing: str | None = None) -> torch.nn.Module:
    """An untrained model of a shakespeare.py setup, in eval mode."""
    model_args = dict(SETUPS[setup][0])
    name = model_args.pop("name")
    if token_mixing is not None:
        model_args["token_mixing"] = token_mixing
    torch.manual_seed(0)
    return create_model(name, vocab_size=vocab_size, context_length=context_length, **model_args).eval()


@torch.no_grad()
def nanogpt_generate(model: torch.nn.Module, prompt_ids: list[int], context_length: int, max_new_tokens: int,
                     generator: torch.Generator) -> Iterator[int]:
    """nanoGPT's sampling loop: crop to the last `context_length` ids, run the model, sample the last position."""
    idx = torch.tensor([prompt_ids], dtype=torch.long)
    for _ in range(max_new_tokens):
        logits = model(idx[:, -context_length:])[:, -1, :]  # (1, V)
        idx_next = torch.multinomial(F.softmax(logits, dim=-1), num_samples=1, generator=generator)
        idx = torch.cat((idx, idx_next), dim=1)
        yield int(idx_next)


def time_interleaved(paths: dict[str, Iterator], max_seconds: float, round_chars: int = 50) -> dict[str, tuple]:
    """(wall seconds, process CPU seconds) of each char of each path after its first; paths take turns, `round_chars`
    chars each, so that a change of machine load hits them alike; a path stops when it ends or used `max_seconds`."""
    for chars in paths.values():
        next(chars)  # the first char also reads the prompt
    costs = {name: ([], []) for name in paths}
    running = dict(paths)
    while running:
        for name, chars in list(running.items()):
            wall, cpu = costs[name]
            last = time.perf_counter(), time.process_time()
            for _ in range(round_chars):
                if next(chars, None) is None:
                    del running[name]
                    break
                now = time.perf_counter(), time.process_time()
                wall.append(now[0] - last[0])
                cpu.append(now[1] - last[1])
                last = now
            if name in running and sum(wall) > max_seconds:
                chars.close()
                del running[name]
    return costs


def summary(costs: tuple[list[float], list[float]], total_chars: int) -> dict:
    """Chars per second (wall clock and CPU time) and the mean wall cost per char (ms) over POSITION_BINS bins of the
    positions after the prompt."""
    wall, cpu = costs
    width = max(1, total_chars // POSITION_BINS)
    bins = [[start, round(1e3 * sum(wall[start:start + width]) / len(wall[start:start + width]), 3)]
            for start in range(0, len(wall), width)]
    return {"chars": len(wall), "seconds": round(sum(wall), 3), "chars_per_s": round(len(wall) / sum(wall), 1),
            "chars_per_cpu_s": round(len(cpu) / max(sum(cpu), 1e-9), 1), "cost_ms_by_position": bins}


def measure_context(context_length: int, args, tokenizer: CharTokenizer) -> dict:
    """Every variant's paths and the GPT's at one context length, timed side by side."""
    prompt = (PROMPT_TEXT * (context_length // len(PROMPT_TEXT) + 1))[:context_length]
    prompt_ids, chars = tokenizer.encode(prompt), args.chars + 1  # + the untimed first char
    paths, params = {}, {}
    for variant, (setup, token_mixing) in VARIANTS.items():
        model = build(setup, tokenizer.vocab_size, context_length, token_mixing)
        params[variant] = count_parameters(model)
        paths[f"{variant}/incremental"] = stream_text(model, tokenizer, prompt, chars, seed=0)
        paths[f"{variant}/full"] = stream_text(model, tokenizer, prompt, chars, seed=0, full_recompute=True)
        if token_mixing == "toeplitz":
            paths[f"{variant}/window"] = nanogpt_generate(model, prompt_ids, context_length, chars,
                                                          torch.Generator().manual_seed(0))
    gpt = build(gpt_setup(), tokenizer.vocab_size, context_length)
    params["gpt"] = count_parameters(gpt)
    paths["gpt/window"] = nanogpt_generate(gpt, prompt_ids, context_length, chars, torch.Generator().manual_seed(0))
    costs = time_interleaved(paths, args.max_seconds)
    out = {name: {"params": count} for name, count in params.items()}
    for path, path_costs in costs.items():
        model_name, kind = path.split("/")
        out[model_name][kind] = summary(path_costs, args.chars)
    for entry in out.values():
        if "incremental" in entry:
            entry["incremental_speedup"] = round(entry["incremental"]["chars_per_s"] / entry["full"]["chars_per_s"], 2)
            entry["incremental_speedup_cpu"] = round(entry["incremental"]["chars_per_cpu_s"] /
                                                     entry["full"]["chars_per_cpu_s"], 2)
    print(json.dumps({"context": context_length, **{path: out[path.split("/")[0]][path.split("/")[1]]["chars_per_s"]
                                                    for path in costs}}), flush=True)
    toeplitz = out["causal_mixer_toeplitz"]
    return {"full_chars_per_s": toeplitz["window"]["chars_per_s"],
            "incremental_chars_per_s": toeplitz["incremental"]["chars_per_s"],
            "gpt_chars_per_s": out["gpt"]["window"]["chars_per_s"],
            "incremental_over_full": round(toeplitz["incremental"]["chars_per_s"] / toeplitz["window"]["chars_per_s"],
                                           2),
            "incremental_over_full_cpu": round(toeplitz["incremental"]["chars_per_cpu_s"] /
                                               toeplitz["window"]["chars_per_cpu_s"], 2), "models": out}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contexts", type=int, nargs="+", default=[64, 256, 1024], help="context lengths")
    parser.add_argument("--chars", type=int, default=2000, help="characters generated per path (default 2000)")
    parser.add_argument("--max-seconds", type=float, default=8.0, help="time limit of one path (default 8)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's own choice)")
    add_common_arguments(parser, "generate")
    args = parser.parse_args()
    if args.smoke:
        args.contexts, args.chars, args.max_seconds = [8, 16], 40, 5.0
    if args.threads:
        torch.set_num_threads(args.threads)
    tokenizer = CharTokenizer(string.ascii_letters + string.digits + string.punctuation + " \n")
    contexts = {str(T): measure_context(T, args, tokenizer) for T in args.contexts}
    write_results(output_path(args, "generate"), args, [0], {
        "contexts": contexts, "chars": args.chars, "max_seconds": args.max_seconds, "vocab_size": tokenizer.vocab_size,
        "protocol": "untrained models of benchmarks/shakespeare.py's sizes continue a T-char prompt, temperature 1, "
                    "paths interleaved in one process; top-level full_chars_per_s is the Toeplitz causal Mixer "
                    "recomputing its T-char window per char (nanoGPT's loop), incremental_chars_per_s its cached "
                    "steps through stream_text"})


if __name__ == "__main__":
    main()
