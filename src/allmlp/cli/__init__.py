"""The `allmlp` command: every subcommand is a module of this package with `main(argv) -> exit code`, imported
only when used. Argument parsing and printing live here and nowhere else in allmlp."""

from __future__ import annotations

import importlib
import os
import sys
import warnings

# name -> one-line help; the command is the module allmlp.cli.<name>, whose main(argv) returns the exit code.
COMMANDS = {
    "models": "list registered models with parameter counts",
    "train": "train a preset: allmlp train PRESET [section.key=value ...]",
    "eval": "evaluate a run folder on its test data",
    "data": "fetch or list data sets: allmlp data fetch NAME",
    "presets": "list the shipped presets",
    "finetune": "train a Mixer/ResMLP/gMLP from official or timm weights: --weights FILE PRESET",
    "embed": "pooled features of a data split: allmlp embed RUN --data test --out f.npy",
    "export": "export a run to onnx, torchscript or pt2 and check its logits",
    "viz": "write a run's figures (curves, mixing weights, embeddings) as PNGs",
    "report": "one self-contained HTML page of a run, or a comparison of runs",
    "sweep": "hyper-parameter search with optuna: allmlp sweep PRESET --trials N key=low:high",
    "generate": "continue prompts with a trained language model (streams text)",
    "chat": "interactive prompt for a trained language model (piped stdin works)",
    "serve": "a local web app over a folder of runs: chat, classify, reports, JSON API",
}

# Errors whose message is the whole story: printed as one line, no traceback (ALLMLP_DEBUG=1 shows it).
EXPECTED_ERRORS = (ValueError, KeyError, FileNotFoundError, TypeError, OSError, UnicodeDecodeError, ImportError)


def usage() -> str:
    """The top-level help text."""
    lines = ["usage: allmlp COMMAND [options]   (allmlp COMMAND --help for more)", "", "commands:"]
    lines += [f"  {name:<10} {help_text}" for name, help_text in COMMANDS.items()]
    return "\n".join(lines)


def _process_rank() -> int:
    """This process's global rank under DDP (torchrun sets RANK; Fabric's launcher LOCAL_RANK and NODE_RANK)."""
    if "RANK" in os.environ:
        return int(os.environ["RANK"])
    local, node = int(os.environ.get("LOCAL_RANK", 0)), int(os.environ.get("NODE_RANK", 0))
    return node * int(os.environ.get("LOCAL_WORLD_SIZE", 1)) + local if node else local


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    if argv[0] in ("-V", "--version"):
        from .. import __version__

        print(f"allmlp {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        import difflib

        close = difflib.get_close_matches(name, COMMANDS, n=1)
        print(f"allmlp: unknown command {name!r}" + (f"; did you mean {close[0]!r}?" if close else ""),
              file=sys.stderr)
        print(usage(), file=sys.stderr)
        return 2
    try:
        with warnings.catch_warnings():  # every warning one `allmlp NAME: warning: ...` line, each time it happens
            warnings.filterwarnings("always", module="allmlp")
            warnings.showwarning = lambda message, *_, **__: print(f"allmlp {name}: warning: {message}",
                                                                   file=sys.stderr, flush=True)
            return int(importlib.import_module(f"{__name__}.{name}").main(rest) or 0)
    except KeyboardInterrupt:
        return 130
    except Exception as err:
        if os.environ.get("ALLMLP_DEBUG"):
            raise
        engine = sys.modules.get("allmlp.engine")  # loaded whenever a training ran
        if engine is not None and isinstance(err, engine.PeerFailed):  # rank 0 failed and says why; this one stops
            return 2
        if not isinstance(err, EXPECTED_ERRORS):
            raise
        if _process_rank() == 0:  # under DDP every rank meets the same error: one copy is enough
            message = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
            print(f"allmlp {name}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
