"""`allmlp data fetch NAME` / `allmlp data list` / `allmlp data prepare SOURCE`: data sets in the cache."""

from __future__ import annotations

import argparse
import json

from .common import parser


def main(argv: list[str]) -> int:
    """Fetch the named data sets (checksums verified), list them, or prepare a corpus as token files."""
    from ..data import registry

    command = parser("data", "Fetch data sets into the cache (checksums verified), list them, or prepare a text "
                             "corpus (a name, a file or a folder of *.txt files) as token files for "
                             "data.prepared=true.")
    command.add_argument("action", choices=["fetch", "list", "prepare"])
    command.add_argument("names", nargs="*", help="data set names (see `allmlp data list`); prepare: one corpus")
    command.add_argument("--tokenizer", default="char", help="prepare: char (default) or bytes")
    command.add_argument("--lines", action="store_true",
                         help="prepare: a file of one sample per line (data.name=lines)")
    command.add_argument("--train-fraction", type=float, default=0.9, help="prepare: data.train_fraction (0.9)")
    command.add_argument("--val-fraction", type=float, default=0.05, help="prepare: data.val_fraction (0.05)")
    args = command.parse_args(argv)
    if args.action == "prepare":
        return prepare_main(command, args)
    if args.action == "list":
        for name, where in registry.available().items():
            print(f"{name:<16} {where}")
        return 0
    if not args.names:
        command.error("fetch needs at least one data set name")
    for name in args.names:
        print(f"{name}: {registry.fetch(name)}")
    return 0


def prepare_main(command: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """`allmlp data prepare SOURCE`: tokenize once into the cache; prints the folder and the tokens per split."""
    from ..configure import build_config
    from ..data.prepared import prepare
    from ..data.text import CORPORA

    if len(args.names) != 1:
        command.error("prepare needs exactly one corpus: a name, a text file or a folder of *.txt files")
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
