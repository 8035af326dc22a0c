"""`allmlp generate RUN --prompt ...`: stream generated text to stdout, one block per prompt."""

from __future__ import annotations

import argparse
import sys

import torch.nn as nn

from ..automaton import AUTOMATON_GROW, DEFAULT_REAPPLY, reapply_passes
from ..compat import sampling_settings
from ..generate import DEFAULT_MAX_NEW_TOKENS, check_prompt_text, load_for_sampling, stream_text
from .common import parser as common_parser


def add_sampling_arguments(parser: argparse.ArgumentParser) -> None:
    """The options generate and chat share."""
    parser.add_argument("run", help="run folder written by allmlp train")
    parser.add_argument("--max-new-tokens", type=int, default=DEFAULT_MAX_NEW_TOKENS, help="chars to generate")
    parser.add_argument("--temperature", type=float, default=1.0, help="0 = greedy; <1 sharper, >1 flatter")
    parser.add_argument("--top-k", type=int, default=None, help="sample among the k likeliest chars")
    parser.add_argument("--top-p", type=float, default=None, help="nucleus: the likeliest chars up to this mass")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: a fresh one)")
    parser.add_argument("--unknown", choices=["error", "drop"], default=None,
                        help="prompt chars the model never saw (default: the run's data.unknown_chars)")


def run_automaton(model: nn.Module, tokenizer, prompts: list[str], args: argparse.Namespace) -> int:
    """`generate` for a centered model: each prompt, then its final pass (every pass with --show-steps), aligned
    so that the prompt's chars stay in their columns."""
    times = DEFAULT_REAPPLY if args.reapply is None else args.reapply
    if args.reapply is None:
        print(f"centered model: {times} automaton passes over the prompt, growing {AUTOMATON_GROW} chars at each "
              "end per pass (--reapply N, --show-steps)", file=sys.stderr)
    for number, prompt in enumerate(prompts):
        if number:
            print("-" * 40)
        seed = None if args.seed is None else args.seed + number
        rows = [(0, prompt), *enumerate(reapply_passes(model, tokenizer, prompt, times, args.top_k or 1, seed,
                                                       AUTOMATON_GROW), 1)]  # (pass, text), the prompt first
        shown = rows if args.show_steps or times == 0 else [rows[0], rows[-1]]  # the prompt, then the last pass
        for step, text in shown:
            indent = " " * ((times - step) * AUTOMATON_GROW)  # pass k has (times - k) * grow fewer chars each side
            print(f"{step:>3} | {indent}{text}" if args.show_steps else indent + text)
    return 0


def main(argv: list[str]) -> int:
    """Continue each prompt (a centered model: rewrite it pass by pass) and stream the text."""
    parser = common_parser("generate", "Generate text from a trained language model (an empty prompt starts a "
                                       "fresh line). Also takes key=value words: topk=2 num_predict=1000 "
                                       "prompts=[Who are you?, Hello].")
    add_sampling_arguments(parser)
    parser.add_argument("--prompt", action="append", help="text to continue (repeat for several prompts)")
    parser.add_argument("--reapply", type=int, default=None, metavar="N",
                        help=f"centered models: passes of the automaton over the prompt, which grows by "
                             f"{AUTOMATON_GROW} chars at each end per pass (default {DEFAULT_REAPPLY})")
    parser.add_argument("--show-steps", action="store_true", help="centered models: print the text after every pass")
    args, extra = parser.parse_known_args(argv)
    apply_sampling_words(args, extra)
    for number, prompt in enumerate(args.prompt or [], start=1):
        check_prompt_text(prompt, f"prompt {number}")
    model, cfg, tokenizer = load_for_sampling(args.run)
    unknown = args.unknown or cfg.data.unknown_chars
    prompts = args.prompt or [""]
    if getattr(model, "lm_kind", None) == "centered":
        return run_automaton(model, tokenizer, prompts, args)
    for flag, given in (("--reapply", args.reapply is not None), ("--show-steps", args.show_steps)):
        if given:
            raise ValueError(f"{flag} needs a centered model; {args.run} holds a {model.lm_kind} model")
    for prompt in prompts if unknown == "error" else []:  # every prompt is checked before any text is written
        tokenizer.encode(prompt)
    for number, prompt in enumerate(prompts):
        if number:
            print("\n" + "-" * 40)
        sys.stdout.write(prompt)
        seed = None if args.seed is None else args.seed + number
        for char in stream_text(model, tokenizer, prompt, args.max_new_tokens, args.temperature, args.top_k,
                                args.top_p, seed, unknown):
            sys.stdout.write(char)
            sys.stdout.flush()
        print()
    return 0


def apply_sampling_words(args: argparse.Namespace, items: list[str]) -> None:
    """Fold `key=value` sampling words of the language-interpolation project into the parsed arguments."""
    for name, value in sampling_settings(items).items():
        if name == "prompts":
            args.prompt = (args.prompt or []) + value
        else:
            setattr(args, name, value)
