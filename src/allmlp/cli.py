"""The `allmlp` command: each subcommand lives in its own module and is imported only when used."""

from __future__ import annotations

import importlib
import os
import sys
import warnings

# name -> ("module:function", one-line help); each function takes argv (list[str]) and returns an exit code.
COMMANDS = {
    "models": ("allmlp.commands:models_main", "list registered models with parameter counts"),
    "train": ("allmlp.commands:train_main", "train a preset: allmlp train PRESET [section.key=value ...]"),
    "eval": ("allmlp.commands:eval_main", "evaluate a run folder on its test data"),
    "data": ("allmlp.commands:data_main", "fetch or list data sets: allmlp data fetch NAME"),
    "presets": ("allmlp.commands:presets_main", "list the shipped presets"),
    "finetune": ("allmlp.pretrained:finetune_main", "train a Mixer/ResMLP/gMLP from official or timm weights: --weights FILE PRESET"),
    "embed": ("allmlp.embed_cli:main", "pooled features of a data split: allmlp embed RUN --data test --out f.npy"),
    "export": ("allmlp.export:export_main", "export a run to onnx, torchscript or pt2 and check its logits"),
    "viz": ("allmlp.viz:main", "write a run's figures (curves, mixing weights, embeddings) as PNGs"),
    "report": ("allmlp.report:main", "one self-contained HTML page of a run, or a comparison of runs"),
    "sweep": ("allmlp.sweep:main", "hyper-parameter search with optuna: allmlp sweep PRESET --trials N key=low:high"),
    "generate": ("allmlp.generate:generate_main", "continue prompts with a trained language model (streams text)"),
    "chat": ("allmlp.generate:chat_main", "interactive prompt for a trained language model (piped stdin works)"),
    "serve": ("allmlp.serve_cli:main", "a local web app over a folder of runs: chat, classify, reports, JSON API"),
}

# Errors whose message is the whole story: printed as one line, no traceback (ALLMLP_DEBUG=1 shows it).
EXPECTED_ERRORS = (ValueError, KeyError, FileNotFoundError, TypeError, OSError, UnicodeDecodeError, ImportError)


def usage() -> str:
    """The top-level help text."""
    lines = ["usage: allmlp COMMAND [options]   (allmlp COMMAND --help for more)", "", "commands:"]
    lines += [f"  {name:<10} {help_text}" for name, (_, help_text) in COMMANDS.items()]
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
        from . import __version__

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
    module, function = COMMANDS[name][0].split(":")
    try:
        with warnings.catch_warnings():  # every warning one `allmlp NAME: warning: ...` line, each time it happens
            warnings.filterwarnings("always", module="allmlp")
            warnings.showwarning = lambda message, *_, **__: print(f"allmlp {name}: warning: {message}",
                                                                   file=sys.stderr, flush=True)
            return int(getattr(importlib.import_module(module), function)(rest) or 0)
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
