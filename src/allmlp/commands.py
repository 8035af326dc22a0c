"""Subcommands train, eval, models, data and presets of the `allmlp` CLI."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

PRECISIONS = ("32-true", "bf16-mixed", "16-mixed", "bf16-true", "64-true")


def _parser(prog: str, description: str) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(prog=f"allmlp {prog}", description=description,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)


def models_main(argv: list[str]) -> int:
    """`allmlp models`: a table of registered models, their parameter counts and input sizes."""
    import torch
    from rich.console import Console
    from rich.table import Table

    from .models import count_parameters, create_model, list_models, model_info

    parser = _parser("models", "List registered models (parameters counted with default arguments).")
    parser.add_argument("--task", choices=["image", "text", "gbm"], help="only models of this task")
    args = parser.parse_args(argv)
    table = Table("name", "task", "parameters", "input size")
    for name in list_models(args.task):
        info = model_info(name)
        with torch.device("meta"):
            params = count_parameters(create_model(name))
        size = "x".join(map(str, info["input_size"])) if info["input_size"] else "-"
        table.add_row(name, info["task"], f"{params:,}", size)
    Console().print(table)
    return 0


def presets_main(argv: list[str]) -> int:
    """`allmlp presets`: the shipped presets and their model."""
    from .config import load_preset, preset_names

    _parser("presets", "List the presets shipped with allmlp.").parse_args(argv)
    for name in preset_names():
        model = load_preset(name).get("model", {}).get("name", "-")
        print(f"{name:<28} {model}")
    return 0


TRAIN_EPILOG = """examples:
  allmlp train fashion_mixer
  allmlp train fashion_mixer model.depth=6 optim.lr=3e-3 train.max_steps=2000
  allmlp train fashion_mixer --resume            # continue runs/fashion_mixer where it stopped
  allmlp train runs/my_run --resume train.max_steps=4000
  allmlp train fashion_mixer train.devices=2 train.strategy=ddp
"""


# Words of the origin projects' command lines that belong to other allmlp commands here.
OTHER_COMMAND_WORDS = {
    "-m": "a hydra multirun is `allmlp sweep PRESET --trials N section.key=low:high` here",
    "--multirun": "a hydra multirun is `allmlp sweep PRESET --trials N section.key=low:high` here",
    "train": "generating from a checkpoint is `allmlp generate RUN --prompt TEXT` here",
    "checkpoint": "generating from a checkpoint is `allmlp generate RUN --prompt TEXT` here",
}


def reject_other_command_words(argv: list[str]) -> None:
    """A one-line error for seed words (`-m`, `train=False checkpoint=...`) that another allmlp command handles."""
    for word in argv:
        key = word.split("=", 1)[0]
        if key in OTHER_COMMAND_WORDS and (key.startswith("-") or "=" in word):
            raise ValueError(f"{word!r} is not a training option: {OTHER_COMMAND_WORDS[key]}")


def train_main(argv: list[str]) -> int:
    """`allmlp train PRESET [overrides] [--resume]`: train and save a run folder."""
    from .checkpoint import CONFIG, CheckpointError, check_run_dir
    from .config import build_config, load_config, load_preset

    reject_other_command_words(argv)
    parser = _parser("train", "Train a model from a preset (or a run folder) with section.key=value overrides.")
    parser.epilog = TRAIN_EPILOG
    parser.add_argument("preset", help="preset name (see `allmlp presets`), a YAML file, or a run folder")
    parser.add_argument("overrides", nargs="*", help="section.key=value, e.g. optim.lr=1e-3")
    parser.add_argument("--resume", action="store_true", help="continue the run folder's last checkpoint")
    parser.add_argument("--run-dir", help="run folder (default: train.out_dir/run_name or preset)")
    args = parser.parse_intermixed_args(argv)

    source = Path(args.preset)
    if (source / CONFIG).is_file():
        run_dir = Path(args.run_dir) if args.run_dir else source
        cfg = _override_loaded(load_config(source / CONFIG), args.overrides)
    else:
        if args.resume and (source.exists() or "/" in args.preset) and source.suffix not in (".yaml", ".yml"):
            raise CheckpointError(f"--resume: run folder not found: {source}")
        load_preset(args.preset)  # an unknown preset is named before any folder is looked at
        cfg = build_config(args.preset, args.overrides)
        run_dir = Path(args.run_dir) if args.run_dir else Path(cfg.train.out_dir) / (cfg.train.run_name or source.stem)
    if args.resume:
        run_dir = check_run_dir(run_dir)
        if run_dir != source:  # resuming by preset name: the run's own config, with this command's overrides
            cfg = _override_loaded(load_config(run_dir / CONFIG), args.overrides)
    return train_and_report(cfg, run_dir, resume=args.resume,
                            reuse=args.resume or bool(args.run_dir) or (source / CONFIG).is_file())


def train_and_report(cfg, run_dir: Path, resume: bool = False, reuse: bool = False, prepare=None) -> int:
    """Train through `engine.run` with TensorBoard figures; rank 0 prints the run folder before and the metrics
    after. `prepare(exp, run_dir, fabric)` may return a note for the header. Returns the exit code (130 when
    Ctrl-C stopped the run after saving it)."""
    import torch

    from .engine import run
    from .machine import torch_threads
    from .models import count_parameters
    from .precision import settle
    from .viz import tensorboard_hook

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


def _override_loaded(cfg, overrides: list[str]):
    """Apply command-line overrides on top of a config loaded from a run folder."""
    from .config import build_config

    if not overrides:
        return cfg
    tree = cfg.to_dict()
    preset = tree.pop("preset", "")
    out = build_config(tree, overrides)
    out.preset = preset
    return out


def eval_main(argv: list[str]) -> int:
    """`allmlp eval RUN`: metrics of a trained run on held-out data, saved as eval.json in the run folder."""
    from .checkpoint import check_run_dir, load_run
    from .tasks import task_module

    parser = _parser("eval", "Evaluate a run folder: accuracy and confusion matrix (images), "
                             "loss / bits per char / perplexity (text).")
    parser.add_argument("run", help="run folder written by allmlp train (or a file in it)")
    parser.add_argument("--split", default="test", help="which split to evaluate (default: test)")
    args = parser.parse_args(argv)
    run_dir = check_run_dir(args.run)
    model, cfg, tokenizer = load_run(run_dir)
    result = task_module(cfg).evaluate_run(model, cfg, run_dir, split=args.split, tokenizer=tokenizer)
    (run_dir / "eval.json").write_text(json.dumps(result, indent=2))
    for key, value in result.items():
        if isinstance(value, dict):
            print(f"{key}:")
            for inner, v in value.items():
                print(f"  {inner:<14} {v:.4f}")
        else:
            print(f"{key:<16} {value:.4f}" if isinstance(value, float) else f"{key:<16} {value}")
    return 0


def data_main(argv: list[str]) -> int:
    """`allmlp data fetch NAME` / `allmlp data list` / `allmlp data prepare SOURCE`: data sets in the cache."""
    from .data import registry

    parser = _parser("data", "Fetch data sets into the cache (checksums verified), list them, or prepare a text "
                             "corpus (a name, a file or a folder of *.txt files) as token files for "
                             "data.prepared=true.")
    parser.add_argument("action", choices=["fetch", "list", "prepare"])
    parser.add_argument("names", nargs="*", help="data set names (see `allmlp data list`); prepare: one corpus")
    parser.add_argument("--tokenizer", default="char", help="prepare: char (default) or bytes")
    parser.add_argument("--lines", action="store_true",
                        help="prepare: a file of one sample per line (data.name=lines)")
    parser.add_argument("--train-fraction", type=float, default=0.9, help="prepare: data.train_fraction (0.9)")
    parser.add_argument("--val-fraction", type=float, default=0.05, help="prepare: data.val_fraction (0.05)")
    args = parser.parse_args(argv)
    if args.action == "prepare":
        return prepare_main(parser, args)
    if args.action == "list":
        for name, where in registry.available().items():
            print(f"{name:<16} {where}")
        return 0
    if not args.names:
        parser.error("fetch needs at least one data set name")
    for name in args.names:
        print(f"{name}: {registry.fetch(name)}")
    return 0


def prepare_main(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """`allmlp data prepare SOURCE`: tokenize once into the cache; prints the folder and the tokens per split."""
    from .config import build_config
    from .data.prepared import prepare
    from .data.text import CORPORA

    if len(args.names) != 1:
        parser.error("prepare needs exactly one corpus: a name, a text file or a folder of *.txt files")
    source = args.names[0]
    data = {"tokenizer": args.tokenizer, "train_fraction": args.train_fraction, "val_fraction": args.val_fraction}
    if source in CORPORA and not args.lines:
        data["name"] = source
    else:
        data.update(name="lines" if args.lines else "text", path=source)
    cfg = build_config({"data": data})
    folder = prepare(cfg.data)
    meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    counts = ", ".join(f"{split} {record['tokens']:,}" for split, record in meta["files"].items())
    print(f"prepared {source} ({meta['dtype']} tokens: {counts}) in {folder}")
    settings = [f"data.tokenizer={args.tokenizer}"] + ([] if data["name"] == source else
                                                       [f"data.name={data['name']}", f"data.path={source}"])
    print("train on it with: data.prepared=true " + " ".join(settings))
    return 0
