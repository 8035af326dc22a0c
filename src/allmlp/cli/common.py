"""What several commands share: their argument parser, and training a config with a header and a summary."""

from __future__ import annotations

import argparse
from pathlib import Path


def parser(prog: str, description: str, epilog: str | None = None) -> argparse.ArgumentParser:
    """The argument parser of `allmlp PROG`; text with line breaks (and an epilog of examples) keeps them."""
    keep_lines = epilog is not None or "\n" in description
    return argparse.ArgumentParser(prog=f"allmlp {prog}", description=description, epilog=epilog,
                                   formatter_class=argparse.RawDescriptionHelpFormatter if keep_lines
                                   else argparse.HelpFormatter)


def train_and_report(cfg, run_dir: Path, resume: bool = False, reuse: bool = False, prepare=None) -> int:
    """Train through `engine.run` with TensorBoard figures; rank 0 prints the run folder before and the metrics
    after. `prepare(exp, run_dir, fabric)` may return a note for the header. Returns the exit code (130 when
    Ctrl-C stopped the run after saving it)."""
    import torch

    from ..engine import run
    from ..machine import torch_threads
    from ..models import count_parameters
    from ..precision import settle
    from ..viz import tensorboard_hook

    def announce(exp, path, fabric):
        note = prepare(exp, path, fabric) if prepare is not None else ""
        choice = settle(fabric, exp, cfg)  # here rather than in fit, to show it: every rank agrees on it
        if fabric.global_rank == 0:
            exp.hooks.append(tensorboard_hook(cfg, exp.tokenizer))
            threads_why = torch_threads(cfg.train.threads, cfg.train.devices)[1]
            print(f"run folder: {path}  model: {cfg.model.name} ({count_parameters(exp.model):,} parameters)"
                  f"{note or ''}\nprecision: {choice.describe()}  torch threads: {torch.get_num_threads()} "
                  f"({threads_why})", flush=True)

    result = run(cfg, run_dir, resume=resume, reuse=reuse, prepare=announce)
    if result["rank"] == 0 and not result["interrupted"]:
        shown = ", ".join(f"{k} {v:.4f}" for k, v in result.items() if isinstance(v, float) and "/" in k)
        print(f"done: step {result['step']} in {result['train_seconds']:.0f} s; {shown}")
        print(f"saved: {result['run_dir']}")
    return 130 if result["interrupted"] else 0
